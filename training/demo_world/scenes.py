"""Pictures of the demo world: 1–5 coloured shapes on a light background, and how they are drawn.

Geometry lives in the unit square that the model sees: CLIP's preprocessing resizes the short side and crops
the centre, so every object is placed inside the central square of the canvas, whatever its size and aspect.
Positions ("left", "top", ...) are therefore the model's view of the picture, and an instance mask drawn with
the same geometry labels every pixel for the vision stage.
"""

from __future__ import annotations

import colorsys
import io
import math
import random
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from training.vision_stage import region_of

SHAPES = ("circle", "square", "triangle")
# Each colour is a region of HSV space (hue in degrees, saturation, value), sampled uniformly per object: a
# model that learned one RGB value per name would fail on everybody else's "red". The regions include the web's
# named colours (CSS red, green, blue, yellow, orange, purple), which the held-out "other programs" set uses.
COLOURS = {
    "red": ((-12, 8), (0.65, 1.0), (0.6, 1.0)), "orange": ((20, 40), (0.75, 1.0), (0.85, 1.0)),
    "yellow": ((48, 62), (0.7, 1.0), (0.85, 1.0)), "green": ((95, 145), (0.55, 1.0), (0.45, 0.85)),
    "blue": ((205, 245), (0.6, 1.0), (0.55, 1.0)), "purple": ((268, 305), (0.45, 0.85), (0.45, 0.85)),
}
COLOUR_NAMES = list(COLOURS)
BACKGROUNDS = ("plain", "off-white", "noise", "gradient")
POSITIONS = ("left", "right", "top", "bottom", "centre")
# Where an object is placed when a task wants it in one region (unit-square centre ranges: x, y).
REGION_BOXES = {"left": ((0.12, 0.28), (0.3, 0.7)), "right": ((0.72, 0.88), (0.3, 0.7)),
                "top": ((0.3, 0.7), (0.12, 0.28)), "bottom": ((0.3, 0.7), (0.72, 0.88)),
                "centre": ((0.42, 0.58), (0.42, 0.58))}


@dataclass
class Shape:
    shape: str
    colour: str
    x: float  # centre, unit square, left to right
    y: float  # centre, unit square, top to bottom
    size: float  # radius of a circle of about the same area, unit square
    angle: float = 0.0  # degrees, squares and triangles

    @property
    def region(self) -> str | None:
        """left/right/top/bottom/centre, or None where two would both be fair answers."""
        return region_of(self.x, self.y)

    def polygon(self, scale: float, ox: float, oy: float) -> list[tuple[float, float]]:
        """Outline in canvas pixels (squares and triangles), for a unit square of `scale` pixels at (ox, oy)."""
        cx, cy, a = ox + self.x * scale, oy + self.y * scale, math.radians(self.angle)
        if self.shape == "square":
            half = self.size * scale * math.sqrt(math.pi) / 2  # same area as the circle of radius `size`
            corners = [(-half, -half), (half, -half), (half, half), (-half, half)]
        else:  # equilateral triangle pointing up, same area as the circle
            r = self.size * scale * math.sqrt(4 * math.pi / (3 * math.sqrt(3)))
            corners = [(r * math.cos(math.radians(t)), r * math.sin(math.radians(t))) for t in (-90, 30, 150)]
        return [(cx + px * math.cos(a) - py * math.sin(a), cy + px * math.sin(a) + py * math.cos(a))
                for px, py in corners]


@dataclass
class Scene:
    objects: list[Shape]
    background: str = "plain"
    width: int = 64
    height: int = 64
    seed: int = 0  # of the pixel noise, colour jitter and background tones
    extras: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        return cls([Shape(**o) for o in d["objects"]], d["background"], d["width"], d["height"], d["seed"],
                   d.get("extras", {}))


# --- sampling ------------------------------------------------------------------------------------------------

def _fits(new: Shape, placed: list[Shape]) -> bool:
    margin = 0.02 + new.size
    if not (margin <= new.x <= 1 - margin and margin <= new.y <= 1 - margin):
        return False
    return all(math.hypot(new.x - o.x, new.y - o.y) >= 1.25 * (new.size + o.size) + 0.02 for o in placed)


def place(rng: random.Random, kinds: list[tuple[str, str]], regions: list[str | None] | None = None,
          big: bool = False) -> list[Shape] | None:
    """Non-overlapping objects of the given (shape, colour) kinds; `regions[i]` pins object i to a region.
    None if they did not fit (the caller draws another scene)."""
    regions = regions or [None] * len(kinds)
    n = len(kinds)
    low, high = (0.2, 0.36) if big else (0.07, max(0.085, 0.2 - 0.025 * n))
    placed: list[Shape] = []
    for (shape, colour), region in zip(kinds, regions, strict=True):
        for _ in range(200):
            size = rng.uniform(low, high)
            if region is None:
                x, y = rng.uniform(0, 1), rng.uniform(0, 1)
            else:
                (x0, x1), (y0, y1) = REGION_BOXES[region]
                x, y = rng.uniform(x0, x1), rng.uniform(y0, y1)
            angle = rng.uniform(-20, 20) if shape != "circle" else 0.0
            candidate = Shape(shape, colour, round(x, 4), round(y, 4), round(size, 4), round(angle, 2))
            if _fits(candidate, placed) and (region is None or candidate.region == region):
                placed.append(candidate)
                break
        else:
            return None
    return placed


def canvas_size(rng: random.Random, large: bool = False) -> tuple[int, int]:
    side = rng.choice((256, 320, 480, 640) if large else (96, 112, 128, 160, 192))
    aspect = rng.choice((1.0,) * 6 + (4 / 3, 3 / 4, 3 / 2, 2 / 3))
    return (round(side * aspect), side) if aspect >= 1 else (side, round(side / aspect))


def random_scene(rng: random.Random, kinds: list[tuple[str, str]] | None = None, n: int | None = None,
                 regions: list[str | None] | None = None, big: bool | None = None) -> Scene:
    """A scene with the given object kinds (or random ones: `n` objects, 1–5 when None)."""
    while True:
        chosen = kinds or [(rng.choice(SHAPES), rng.choice(COLOUR_NAMES)) for _ in range(n or rng.randint(1, 5))]
        is_big = big if big is not None else (len(chosen) == 1 and rng.random() < 0.3)
        objects = place(rng, chosen, regions, big=is_big)
        if objects is not None:
            width, height = canvas_size(rng)
            return Scene(objects, rng.choice(BACKGROUNDS), width, height, rng.randrange(2**31))


# The share of the vision stage's pictures in which two to five objects share a colour or a shape. Drawn at random,
# three of one colour are rare and four nearly never there (six colours): the tower, asked how many objects share
# each patch's colour, answered 3 for a true 4 every time and was right for 3 only 60 % of the time; with these
# pictures 100 % and 67 % (docs/demo-model.md, "Counting what is named").
SHARED_SCENES = 0.4


def vision_scene(rng: random.Random) -> Scene:
    """A picture for the vision stage: a random scene, or (SHARED_SCENES of them) one in which two to five objects
    share a colour or a shape and the rest are random."""
    if rng.random() >= SHARED_SCENES:
        return random_scene(rng)
    total = rng.randint(2, 5)
    alike = rng.randint(2, total)
    if rng.random() < 0.5:
        colour = rng.choice(COLOUR_NAMES)
        kinds = [(rng.choice(SHAPES), colour) for _ in range(alike)]
    else:
        shape = rng.choice(SHAPES)
        kinds = [(shape, rng.choice(COLOUR_NAMES)) for _ in range(alike)]
    kinds += [(rng.choice(SHAPES), rng.choice(COLOUR_NAMES)) for _ in range(total - alike)]
    rng.shuffle(kinds)
    return random_scene(rng, kinds=kinds)


# --- drawing -------------------------------------------------------------------------------------------------

def _background(style: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    if style == "plain":
        return np.full((height, width, 3), rng.integers(248, 256), np.float32)
    if style == "off-white":
        tone = np.array([rng.integers(238, 250), rng.integers(230, 244), rng.integers(212, 232)], np.float32)
        return np.broadcast_to(tone, (height, width, 3)).copy()
    if style == "noise":
        base = np.full((height, width, 3), rng.integers(228, 250), np.float32)
        return base + rng.normal(0, rng.uniform(4, 12), (height, width, 1)).astype(np.float32)
    # gradient between two light, barely saturated tones, in a random direction
    a, b = (rng.integers(205, 256, 3).astype(np.float32) for _ in range(2))
    theta = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xx / max(1, width - 1) - 0.5) * np.cos(theta) + (yy / max(1, height - 1) - 0.5) * np.sin(theta)
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    return a + (b - a) * t[..., None]


def paint(colour: str, rng: np.random.Generator) -> tuple[int, int, int]:
    """One RGB tone of the named colour."""
    (h0, h1), (s0, s1), (v0, v1) = COLOURS[colour]
    rgb = colorsys.hsv_to_rgb((rng.uniform(h0, h1) % 360) / 360, rng.uniform(s0, s1), rng.uniform(v0, v1))
    return tuple(int(round(255 * c)) for c in rgb)


def _draw(draw: ImageDraw.ImageDraw, obj: Shape, scale: float, ox: float, oy: float, fill) -> None:
    if obj.shape == "circle":
        cx, cy, r = ox + obj.x * scale, oy + obj.y * scale, obj.size * scale
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon(obj.polygon(scale, ox, oy), fill=fill)


def render(scene: Scene, supersample: int | None = None) -> tuple[Image.Image, Image.Image]:
    """-> (RGB picture, instance mask: pixel value i + 1 where object i is, 0 for the background).

    Anti-aliasing without drawing the whole picture large: each object's coverage is drawn `supersample` times
    larger in one channel, shrunk to an alpha map and blended over the background."""
    rng = np.random.default_rng(scene.seed)
    w, h = scene.width, scene.height
    k = supersample or int(rng.choice([1, 3]))  # aliased and anti-aliased edges both occur in the wild
    side, ox, oy = min(w, h), (w - min(w, h)) / 2, (h - min(w, h)) / 2
    pixels = _background(scene.background, w, h, rng)
    mask = Image.new("L", (w, h), 0)
    draw_mask = ImageDraw.Draw(mask)
    for i, obj in enumerate(scene.objects):
        colour = np.array(paint(obj.colour, rng), np.float32)
        _draw(draw_mask, obj, side, ox, oy, i + 1)
        # Only the object's bounding box is blended (a shape's outline stays within 1.6 x its size).
        reach = 1.6 * obj.size * side + 2
        x0, x1 = max(0, int(ox + obj.x * side - reach)), min(w, int(ox + obj.x * side + reach) + 1)
        y0, y1 = max(0, int(oy + obj.y * side - reach)), min(h, int(oy + obj.y * side + reach) + 1)
        if k == 1:
            alpha = (np.asarray(mask)[y0:y1, x0:x1] == i + 1).astype(np.float32)
        else:
            cover = Image.new("L", ((x1 - x0) * k, (y1 - y0) * k), 0)
            _draw(ImageDraw.Draw(cover), obj, side * k, (ox - x0) * k, (oy - y0) * k, 255)
            alpha = np.asarray(cover.resize((x1 - x0, y1 - y0), Image.Resampling.BOX), np.float32) / 255
        box = pixels[y0:y1, x0:x1]
        pixels[y0:y1, x0:x1] = box * (1 - alpha[..., None]) + colour * alpha[..., None]
    image = Image.fromarray(np.clip(pixels + 0.5, 0, 255).astype(np.uint8))
    return image, mask


def encode(image: Image.Image, rng: random.Random, fmt: str | None = None) -> tuple[bytes, str]:
    """PNG, or JPEG at a quality between 50 and 95 -> (bytes, file suffix)."""
    fmt = fmt or rng.choice(("png", "jpeg", "jpeg"))
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG", compress_level=1)  # drawing speed matters more than a few bytes
        return out.getvalue(), ".png"
    image.save(out, "JPEG", quality=rng.randint(50, 95))
    return out.getvalue(), ".jpg"
