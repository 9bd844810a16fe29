"""Reading a demo-model answer back into what it claims (a colour, a shape, a number, yes/no, a region, a
picture), and per-skill accuracy over a held-out set.

An answer is right when it names the expected value and nothing that contradicts it: "It is red." is right for
red, "It is red or orange." is not. Both languages, with the spellings people use ("color", "зеленый").
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

COLOUR_WORDS = {
    "red": ("red", "красн"), "green": ("green", "зелён", "зелен"), "blue": ("blue", "синий", "синяя", "сини"),
    "yellow": ("yellow", "жёлт", "желт"), "orange": ("orange", "оранжев"), "purple": ("purple", "violet", "фиолетов"),
}
SHAPE_WORDS = {"circle": ("circle", "круг"), "square": ("square", "квадрат"), "triangle": ("triangle", "треугольник")}
NUMBER_WORDS = {
    0: ("no", "none", "zero", "нет", "ноль"), 1: ("one", "a", "an", "один", "одна", "одну"),
    2: ("two", "два", "две"), 3: ("three", "три"), 4: ("four", "четыре"), 5: ("five", "пять"),
}
POSITION_WORDS = {"left": ("left", "слева"), "right": ("right", "справа"), "top": ("top", "вверху", "сверху"),
                  "bottom": ("bottom", "внизу", "снизу"), "centre": ("centre", "center", "middle", "в центре",
                                                                      "посередине")}
PICTURE_WORDS = {0: ("first", "первой", "первая", "первую"), 1: ("second", "второй", "вторая", "вторую")}


def words(text: str) -> list[str]:
    return re.findall(r"[a-zа-яё0-9]+", text.lower().replace("ё", "е").replace("—", " "))


def _norm(stem: str) -> str:
    return stem.lower().replace("ё", "е")


def _found(text: str, table: dict) -> set:
    tokens, low = words(text), " ".join(words(text))
    out = set()
    for value, stems in table.items():
        for stem in map(_norm, stems):
            hit = (stem in low) if " " in stem else any(t.startswith(stem) for t in tokens)
            if hit:
                out.add(value)
    return out


def colours(text: str) -> set[str]:
    return _found(text, COLOUR_WORDS)


def shapes(text: str) -> set[str]:
    return _found(text, SHAPE_WORDS)


def regions(text: str) -> set[str]:
    return _found(text, POSITION_WORDS)


def number(text: str) -> int | None:
    """The first number in the answer: a digit or a number word ("there are no circles" -> 0)."""
    for token in words(text):
        if token.isdigit():
            return int(token)
        for value, forms in NUMBER_WORDS.items():
            if token in forms and not (value == 1 and token in ("a", "an")):
                return value
    return None


def yes_no(text: str) -> bool | None:
    first = (words(text) or [""])[0]
    return True if first in ("yes", "да") else False if first in ("no", "нет") else None


def picture(text: str) -> int | None:
    found = {v for v, forms in PICTURE_WORDS.items() if any(t in forms for t in words(text))}
    return found.pop() if len(found) == 1 else None


def caption_groups(text: str) -> Counter:
    """"A red circle and two blue squares." -> {(circle, red): 1, (square, blue): 2}."""
    out = Counter()
    for piece in re.split(r",| and | и ", text.lower()):
        c, s = colours(piece), shapes(piece)
        if len(c) == 1 and len(s) == 1:
            out[(s.pop(), c.pop())] += number(piece) or 1
    return out


def _text_key(text: str) -> str:
    return " ".join(words(text))


def is_right(answer: str, expect: dict) -> bool:
    kind, value = expect["kind"], expect["value"]
    if kind == "colour":
        return colours(answer) == {value}
    if kind == "shape":
        return shapes(answer) == {value}
    if kind == "count":
        return number(answer) == value
    if kind == "yesno":
        return yes_no(answer) is value
    if kind == "position":
        return regions(answer) == {value}
    if kind == "picture":
        return picture(answer) == value
    if kind == "caption":
        return caption_groups(answer) == Counter({(s, c): n for s, c, n in value})
    if kind == "text":
        return _text_key(answer) == _text_key(value)
    raise ValueError(f"unknown expectation kind {kind!r}")


def report(items: list[dict], answers: list[str]) -> dict:
    """Per-skill and per-language accuracy, and the yes-ratio of yes/no answers.
    items[i] has "skill", "lang", "expect"; answers[i] is the model's answer."""
    right: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    yes = total_yesno = 0
    for item, answer in zip(items, answers, strict=True):
        ok = is_right(answer, item["expect"])
        for key in (item["skill"], f"{item['skill']}/{item['lang']}", f"all/{item['lang']}", "all"):
            right[key][0] += ok
            right[key][1] += 1
        if item["expect"]["kind"] == "yesno":
            total_yesno += 1
            yes += yes_no(answer) is True
    out = {k: {"accuracy": r / n, "n": n} for k, (r, n) in sorted(right.items())}
    if total_yesno:
        out["exists"]["yes_ratio"] = yes / total_yesno
    return out
