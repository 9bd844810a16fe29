"""Held-out pictures drawn by another program (matplotlib): one large shape on an off-white background, at
sizes and aspects the generator never uses, in the web's named colours, saved as JPEG at quality 60. A model
that only learned our own renderer's pixels fails here; one that learned colours and shapes does not."""

from __future__ import annotations

import random
from pathlib import Path

from training.demo_world import language as L
from training.demo_world.questions import ask
from training.demo_world.scenes import SHAPES

# CSS named colours: other people's idea of each colour name.
CSS = {"red": "#ff0000", "green": "#008000", "blue": "#0000ff", "yellow": "#ffff00", "orange": "#ffa500",
       "purple": "#800080"}
OFF_WHITE = ("#faf0e6", "#fdf5e6", "#f5f5dc", "#fffaf0", "#f8f8f0")  # linen, old lace, beige, floral white


def draw(path: Path, shape: str, colour: str, rng: random.Random) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle, RegularPolygon

    width = rng.choice(((5, 4), (4, 5), (6, 4), (4, 4), (7, 5)))  # inches
    fig = plt.figure(figsize=width, dpi=rng.choice((50, 64, 80)), facecolor=rng.choice(OFF_WHITE))
    side = min(width)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width[0])
    ax.set_ylim(0, width[1])
    ax.set_aspect("equal")
    ax.axis("off")
    cx = width[0] / 2 + rng.uniform(-0.1, 0.1) * side
    cy = width[1] / 2 + rng.uniform(-0.1, 0.1) * side
    r = rng.uniform(0.22, 0.34) * side
    angle = rng.uniform(-0.3, 0.3)
    if shape == "circle":
        patch = Circle((cx, cy), r)
    elif shape == "square":
        patch = RegularPolygon((cx, cy), 4, radius=r * 1.2, orientation=0.785 + angle)
    else:
        patch = RegularPolygon((cx, cy), 3, radius=r * 1.25, orientation=angle)
    patch.set_facecolor(CSS[colour])
    patch.set_edgecolor("none")
    ax.add_patch(patch)
    fig.savefig(path, format="jpeg", pil_kwargs={"quality": 60}, facecolor=fig.get_facecolor())
    plt.close(fig)


def draw_other_set(root: Path, n: int, seed: int) -> list[dict]:
    """n items (colour and shape questions alternate, both languages) -> eval records."""
    rng = random.Random(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        shape, colour = rng.choice(SHAPES), rng.choice(list(CSS))
        rel = f"images/o{i:06d}.jpg"
        draw(root / rel, shape, colour, rng)
        lang, skill = L.LANGUAGES[(i // 2) % 2], ("colour", "shape")[i % 2]
        question = ask(skill, lang, rng)
        records.append({"id": f"o{i:06d}", "skill": f"other_{skill}", "lang": lang,
                        "messages": [{"role": "user", "content": [{"type": "image", "key": rel},
                                                                  {"type": "text", "text": question}]}],
                        "expect": {"kind": skill, "value": colour if skill == "colour" else shape}})
    return records
