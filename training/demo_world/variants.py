"""Dialogs drawn beside the stage-2 mix (tasks.MIX): questions about one named object among several (symbols.py,
build.py's named.json) and the greeting put before a training dialog (build.py)."""

from __future__ import annotations

import random

from training.demo_world import language as L
from training.demo_world.questions import text_only
from training.demo_world.tasks import attribute_task, exists_task, position_task
from training.demo_world.templates import TEXT_ONLY

NAMED_FORMS = {"all": (3, 3, 3, 2), "colour-shape": (1, 1, 0, 0)}  # weights of colour, shape, position, exists


def named_task(rng: random.Random, lang: str | None = None, forms: str = "all") -> dict:
    """A question about one named object among several, the match stage 2 is slowest to learn: its colour, its
    shape, where it is, whether it is there (`forms` "all"), or only the first two ("colour-shape"). For
    symbols.py and build.py's named.json."""
    lang = lang or rng.choice(L.LANGUAGES)
    kind = rng.choices(("colour", "shape", "position", "exists"), weights=NAMED_FORMS[forms])[0]
    if kind == "colour":
        return attribute_task(rng, lang, "colour", "shape", single=0.0)
    if kind == "shape":
        return attribute_task(rng, lang, "shape", "colour", single=0.0)
    if kind == "position":
        return position_task(rng, lang, fewest=2)
    return exists_task(rng, lang)


GREETED = 0.05  # of stage 2's dialogs (build.py): a greeting first, then the dialog as drawn


def greeted(sample: dict, rng: random.Random) -> dict:
    """The same dialog with a greeting turn before it, in its language: how chats begin ("Hi!", then a photo).
    Text-only dialogs alone, a greeting a quarter of them, were too few for the language of the first thing a user
    types to be learned for sure (a model of this recipe answered "Hello!" in Russian). Training data only; the
    held-out sets are drawn without it."""
    lang = sample["lang"]
    return {**sample, "turns": [([], text_only("greeting", rng, lang), TEXT_ONLY["greeting"][lang][1]),
                                *sample["turns"]]}
