"""Where each answer of a dialog should look: the objects its question is about, per picture.

Stage 2 can supervise attention (`focus_weight`, training/trainee.py): at the question and answer of a turn,
heads of the LLM are trained to put their attention on the image vectors of the objects the question names, or
on the picture's SOI vector when nothing it names is there. Without it, the demo LLM never learned to match a
question's word to the patches of the named object in the recipe's budget: its heads spread attention over all
objects by their area, and every question about one object among several stayed near chance (docs/demo-model.md,
"Where retrieval fails", "Attention told where to look").

A record's "focus" has one entry per assistant turn: null (nothing to look at: a text-only turn, no picture, a
broken SOI/EOI frame), or a list of {"image": k, "objects": [[x, y, r], ...]}, k the dialog's k-th picture and
each object its centre and radius in the unit square the model sees (scenes.py); an empty list of objects means
that nothing the question asks for is in picture k.
"""

from __future__ import annotations

from training.demo_world.scenes import Scene
from training.demo_world.scoring import colours, picture, shapes
from training.records import IMAGE_TAG


def turn_focus(question: str, pictures: list[Scene], mine: list[int]) -> list[dict] | None:
    """The focus of one question. `pictures`: the dialog's pictures so far; `mine`: the indices of those that
    came with this question."""
    if not pictures:
        return None
    asked = picture(question)
    if asked is not None and len(mine) > 1 and asked < len(mine):
        candidates = [mine[asked]]  # "the shape in the second picture" of two sent together
    elif asked is not None and not mine and asked < len(pictures):
        candidates = [asked]
    else:
        candidates = mine or [len(pictures) - 1]  # the pictures of this turn, or else the last one
    named_colours, named_shapes = colours(question), shapes(question)
    out = []
    for k in candidates:
        objects = [o for o in pictures[k].objects
                   if (not named_colours or o.colour in named_colours) and (not named_shapes or o.shape in named_shapes)]
        out.append({"image": k, "objects": [[round(o.x, 4), round(o.y, 4), round(o.size, 4)] for o in objects]})
    return out


def record_focus(conversations: list[dict], scenes: list[Scene], broken_frame: bool = False) -> list:
    """A LLaVA record's conversations and its pictures' scenes (in the order of its `<image>` tags) -> the
    record's "focus": an entry per assistant turn."""
    shown, current, out = 0, None, []
    for message in conversations:
        if message["from"] == "human":
            text = message["value"]
            count = text.count(IMAGE_TAG)
            mine = list(range(shown, shown + count))
            shown += count
            current = None if broken_frame else turn_focus(text.replace(IMAGE_TAG, ""), scenes[:shown], mine)
        else:
            out.append(current)
    return out
