"""How the world's questions are worded: a template of the asked kind filled with its slots and typed the way
people type (tasks.py draws what is asked; templates.py holds the wordings)."""

from __future__ import annotations

import random

from training.demo_world import language as L
from training.demo_world.scenes import COLOUR_NAMES, SHAPES
from training.demo_world.templates import TEXT_ONLY, Q


def typed(text: str, rng: random.Random, lang: str, lower: float = 0.15, bare: float = 0.1) -> str:
    """A question as people type it: at times lower case first, without its final ? . or !, е for ё."""
    if lang == "ru" and rng.random() < 0.4:
        text = text.replace("ё", "е")  # people often type е for ё
    if rng.random() < lower:
        text = text[:1].lower() + text[1:]
    if rng.random() < bare:
        text = text.rstrip("?.!")
    return text


def ask(kind: str, lang: str, rng: random.Random, shape: str | None = None, colour: str | None = None,
        nth: int | None = None, thing: str | None = None) -> str:
    slots = {"nth": L.EN_ORDINALS.get(nth, ""), "nth_ru": L.RU_ORDINALS_PREP.get(nth, ""), "thing": thing or "",
             "a_thing": thing or ""}
    if shape:
        slots |= {"shape": shape if lang == "en" else L.RU_SHAPES[shape][0], "shapes": L.EN_PLURAL[shape],
                  "shape_gen": L.RU_SHAPES[shape][1], "shape_gpl": L.RU_SHAPES[shape][2]}
    if colour:
        slots |= {"colour": colour, "colour_m": L.RU_COLOURS[colour][0], "colour_f": L.RU_COLOURS[colour][1],
                  "colour_gpl": L.RU_COLOURS[colour][3]}
    return typed(rng.choice(Q[(kind, lang)]).format(**slots), rng, lang)


def thing_phrase(lang: str, shape: str | None, colour: str | None, article: bool) -> str:
    """The object a question names: "a blue circle", "the circle", "синий круг", "красная фигура"."""
    if lang == "en":
        return L.en_group(shape or "shape", colour, 1, article=article)
    return L.ru_group(shape, colour, 1)


# What a question about a picture may ask (ask()'s kinds that need no second picture).
PICTURE_KINDS = ("colour", "shape", "count", "caption", "colour_of", "shape_of", "count_colour", "count_shape",
                 "where", "exists")


def picture_question(rng: random.Random, lang: str) -> str:
    """Any question about a picture, its named shape and colour drawn at random."""
    kind = rng.choice(PICTURE_KINDS)
    shape, colour = rng.choice(SHAPES), rng.choice(COLOUR_NAMES)
    thing = thing_phrase(lang, rng.choice((shape, None)), colour, article=kind == "exists")
    return ask(kind, lang, rng, shape=shape, colour=colour, thing=thing)


def text_only(category: str, rng: random.Random, lang: str) -> str:
    """A text-only turn of TEXT_ONLY's `category` as typed: "what can you do", "help"; a greeting more often in
    lower case or bare ("hello", "Hi": a model that had only seen "Hello!" answered "hello" in Russian)."""
    lower, bare = (0.3, 0.3) if category == "greeting" else (0.15, 0.1)
    return typed(rng.choice(TEXT_ONLY[category][lang][0]), rng, lang, lower=lower, bare=bare)
