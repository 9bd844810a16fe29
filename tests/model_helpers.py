"""Helpers shared by model tests: drawn images and dialogs in the protocol's message format."""

from __future__ import annotations

import io

from PIL import Image, ImageDraw


def drawn_image(colour=(200, 30, 30), size=(96, 80), shape="circle") -> Image.Image:
    img = Image.new("RGB", size, (240, 240, 240))
    draw = ImageDraw.Draw(img)
    box = (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=colour)
    return img


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def user(text: str = "", *image_keys: str) -> dict:
    return {"role": "user", "content": [{"type": "image", "key": k} for k in image_keys]
            + ([{"type": "text", "text": text}] if text else [])}


def assistant(text: str) -> dict:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def key(name: str) -> str:
    return f"omnifusion:image:{name}"
