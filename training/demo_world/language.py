"""The demo world's two languages: words with their grammatical forms, and the sentences built from them.

English needs articles and plurals; Russian needs gender and case after numerals:
    1 -> nominative singular ("одна красная фигура", "один красный круг"),
    2-4 -> genitive singular noun, adjective nominative plural for feminine / genitive plural for masculine
           ("две красные фигуры", "два красных круга"),
    5 and 0 -> genitive plural ("пять красных фигур", "кругов нет").
Every shape noun here is masculine (круг, квадрат, треугольник); "фигура" (shape) is feminine.
"""

from __future__ import annotations

LANGUAGES = ("en", "ru")

EN_NUMBERS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}
RU_NUMBERS_M = {1: "один", 2: "два", 3: "три", 4: "четыре", 5: "пять"}
RU_NUMBERS_F = {1: "одна", 2: "две", 3: "три", 4: "четыре", 5: "пять"}

EN_PLURAL = {"circle": "circles", "square": "squares", "triangle": "triangles"}
# shape -> (nominative sg, genitive sg, genitive pl)
RU_SHAPES = {"circle": ("круг", "круга", "кругов"), "square": ("квадрат", "квадрата", "квадратов"),
             "triangle": ("треугольник", "треугольника", "треугольников")}
RU_FIGURE = ("фигура", "фигуры", "фигур")  # nominative sg, genitive sg (= nominative pl), genitive pl
# colour -> (masculine sg, feminine sg, nominative pl, genitive pl)
RU_COLOURS = {
    "red": ("красный", "красная", "красные", "красных"),
    "green": ("зелёный", "зелёная", "зелёные", "зелёных"),
    "blue": ("синий", "синяя", "синие", "синих"),
    "yellow": ("жёлтый", "жёлтая", "жёлтые", "жёлтых"),
    "orange": ("оранжевый", "оранжевая", "оранжевые", "оранжевых"),
    "purple": ("фиолетовый", "фиолетовая", "фиолетовые", "фиолетовых"),
}
EN_POSITIONS = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom",
                "centre": "in the centre"}
RU_POSITIONS = {"left": "слева", "right": "справа", "top": "вверху", "bottom": "внизу", "centre": "в центре"}
EN_ORDINALS = {0: "first", 1: "second", 2: "third", 3: "fourth"}
RU_ORDINALS = {0: "Первая", 1: "Вторая", 2: "Третья", 3: "Четвёртая"}
RU_ORDINALS_PREP = {0: "первой", 1: "второй", 2: "третьей", 3: "четвёртой"}  # "на первой картинке"


def cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def sentence(text: str) -> str:
    return cap(text.strip()) + ("" if text.rstrip().endswith((".", "!", "?")) else ".")


def join(items: list[str], lang: str) -> str:
    if len(items) == 1:
        return items[0]
    last = " and " if lang == "en" else " и "
    return ", ".join(items[:-1]) + last + items[-1]


# --- noun phrases ------------------------------------------------------------------------------------------------

def en_group(shape: str, colour: str | None, count: int, article: bool = True) -> str:
    """"a red circle", "two blue squares", "three circles"."""
    adjective = f"{colour} " if colour else ""
    if count == 1:
        head = f"{adjective}{shape}"
        return (("an " if head[0] in "aeiou" else "a ") + head) if article else head
    return f"{EN_NUMBERS[count]} {adjective}{EN_PLURAL[shape]}"


def ru_group(shape: str | None, colour: str | None, count: int, with_one: bool = False) -> str:
    """"красный круг", "два синих квадрата", "пять фигур", "две красные фигуры"; shape None = фигура."""
    feminine = shape is None
    nouns = RU_FIGURE if feminine else RU_SHAPES[shape]
    forms = RU_COLOURS[colour] if colour else None
    if count == 1:
        adjective = (forms[1] if feminine else forms[0]) + " " if forms else ""
        number = (RU_NUMBERS_F[1] if feminine else RU_NUMBERS_M[1]) + " " if with_one else ""
        return f"{number}{adjective}{nouns[0]}"
    numbers = RU_NUMBERS_F if feminine else RU_NUMBERS_M
    if count <= 4:
        adjective = ((forms[2] if feminine else forms[3]) + " ") if forms else ""
        return f"{numbers[count]} {adjective}{nouns[1]}"
    adjective = (forms[3] + " ") if forms else ""
    return f"{numbers[count]} {adjective}{nouns[2]}"


def describe(groups: list[tuple[str, str, int]], lang: str) -> str:
    """Caption of a scene from its (shape, colour, count) groups, in the order given."""
    if lang == "en":
        return sentence(join([en_group(s, c, n) for s, c, n in groups], "en"))
    return sentence(join([ru_group(s, c, n) for s, c, n in groups], "ru"))


def picture_in_words(objects: list[tuple[str, str, str | None]], lang: str, nth: int | None = None) -> str:
    """What a picture shows, told in words, for the text stage: "Picture: a red circle on the left and a blue
    square." (objects as (shape, colour, region or None), left to right; `nth`: which picture of the dialog, from 0)."""
    if lang == "en":
        parts = [en_group(s, c, 1) + (f" {EN_POSITIONS[r]}" if r else "") for s, c, r in objects]
        head = "Picture" if nth is None else f"{cap(EN_ORDINALS[nth])} picture"
    else:
        parts = [ru_group(s, c, 1) + (f" {RU_POSITIONS[r]}" if r else "") for s, c, r in objects]
        head = "Картинка" if nth is None else f"{RU_ORDINALS[nth]} картинка"
    return f"{head}: {join(parts, lang)}."


# --- answers -------------------------------------------------------------------------------------------------------

def count_answer(count: int, lang: str, shape: str | None = None, colour: str | None = None) -> str:
    """"There are two red shapes." / "Две красные фигуры." / "There are no circles." / "Кругов нет."."""
    if lang == "en":
        noun = shape or "shape"
        if count == 0:
            return sentence(f"there are no {colour + ' ' if colour else ''}{EN_PLURAL.get(noun, noun + 's')}")
        if count == 1:
            return sentence(f"there is one {colour + ' ' if colour else ''}{noun}")
        plural = EN_PLURAL.get(noun, noun + "s")
        return sentence(f"there are {EN_NUMBERS[count]} {colour + ' ' if colour else ''}{plural}")
    if count == 0:
        nouns = RU_FIGURE if shape is None else RU_SHAPES[shape]
        adjective = (RU_COLOURS[colour][3] + " ") if colour else ""
        return sentence(f"{adjective}{nouns[2]} нет")
    return sentence(ru_group(shape, colour, count, with_one=True))


def colour_answer(colour: str, lang: str, shape: str | None = None) -> str:
    """"It is red." / "The circle is red." / "Она красная." / "Круг красный."."""
    if lang == "en":
        return sentence(f"the {shape} is {colour}" if shape else f"it is {colour}")
    if shape:
        return sentence(f"{RU_SHAPES[shape][0]} {RU_COLOURS[colour][0]}")
    return sentence(f"она {RU_COLOURS[colour][1]}")


def shape_answer(shape: str, lang: str, colour: str | None = None) -> str:
    """"It is a circle." / "The red shape is a circle." / "Это круг." / "Красная фигура — это круг."."""
    if lang == "en":
        return sentence(f"the {colour} shape is a {shape}" if colour else f"it is a {shape}")
    if colour:
        return sentence(f"{RU_COLOURS[colour][1]} фигура — это {RU_SHAPES[shape][0]}")
    return sentence(f"это {RU_SHAPES[shape][0]}")


def position_answer(region: str, lang: str, shape: str | None = None, colour: str | None = None,
                    pronoun: bool = False) -> str:
    """"The triangle is on the left." / "The red shape is at the top." / "Треугольник слева." / "It is on the
    left." / "Она слева." (pronoun: the shape was named in an earlier turn)."""
    if pronoun:
        return sentence(f"it is {EN_POSITIONS[region]}" if lang == "en" else f"она {RU_POSITIONS[region]}")
    if lang == "en":
        subject = f"the {colour + ' ' if colour else ''}{shape or 'shape'}"
        return sentence(f"{subject} is {EN_POSITIONS[region]}")
    if shape:
        subject = f"{RU_COLOURS[colour][0] + ' ' if colour else ''}{RU_SHAPES[shape][0]}"
    else:
        subject = f"{RU_COLOURS[colour][1] + ' ' if colour else ''}фигура"
    return sentence(f"{subject} {RU_POSITIONS[region]}")


def yes_no(answer: bool, lang: str) -> str:
    return ("Yes." if answer else "No.") if lang == "en" else ("Да." if answer else "Нет.")


def more_shapes_answer(index: int, lang: str) -> str:
    if lang == "en":
        return sentence(f"the {EN_ORDINALS[index]} picture has more shapes")
    return sentence(f"на {RU_ORDINALS_PREP[index]} картинке больше фигур")
