"""Untrusted bytes -> a clean RGB image for CLIP, or an `ImageError` with a stable code.

The worker turns an `ImageError` into an `error` event (`bad_image`, with `.code` alongside); the bot shows
`.message` to the user. Nothing else may escape `load_image`, whatever the bytes are: a crash here would take
the whole job (and, at worst, the worker) down for one bad upload.

Pillow's process-wide switches (`LOAD_TRUNCATED_IMAGES`, `MAX_IMAGE_PIXELS`) are left alone on purpose: other
code in the same process may rely on them, and our own limits live in `ImageLimits`.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, ImageStat

log = logging.getLogger(__name__)

# Machine code -> short human message. The bot may word them its own way; the codes are the stable part.
IMAGE_ERROR_CODES = {
    "empty_image": "The file is empty. Please send the picture again.",
    "not_an_image": "This doesn't look like a picture. Please send a JPEG, PNG, WebP or GIF.",
    "corrupt_image": "The picture seems damaged or incomplete. Please send it again.",
    "image_too_large": "The picture has too many pixels. Please send a smaller one.",
    "image_too_big_bytes": "The file is too big. Please send a smaller or compressed picture.",
    "unsupported_image": "This kind of picture isn't supported. Please send it as a JPEG or PNG.",
}

# What Pillow's readers and decoders raise on hostile input, seen in practice and in our fuzz test: OSError
# (truncated data, decoder errors; includes UnidentifiedImageError), SyntaxError (broken PNG chunks), and
# assorted parsing errors from plugins that index or unpack header bytes without checking lengths, and
# RuntimeError from the AVIF plugin (libavif) when it is enabled.
# MemoryError is deliberately absent: the pixel cap is checked before decoding, so seeing one is a bug.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
                  ZeroDivisionError, RuntimeError)


class ImageError(ValueError):
    """An image we will not use. `.code` is a key of IMAGE_ERROR_CODES; `.message` is for people;
    `str(err)` adds the technical detail for logs."""

    def __init__(self, code: str, detail: str = "", message: str | None = None):
        self.code = code
        self.message = message or IMAGE_ERROR_CODES[code]
        self.detail = detail
        super().__init__(f"{code}: {detail}" if detail else code)


@dataclass(frozen=True)
class ImageLimits:
    """Caps applied before any pixel is decoded.

    max_bytes: 20 MiB is Telegram's download limit for bots, so nothing legitimate is larger.
    max_pixels: 40 MP covers every phone camera (a 48 MP sensor saves 12 MP by default) while keeping the
        decoded RGB buffer under ~120 MB. Pillow's own bomb check (~89 MP warning, ~179 MP error) sits above
        it, so ours always fires first at the defaults.
    max_side: even with few pixels, a 1 x 10^6 strip is no picture; 20,000 still admits real panoramas.
    formats: Pillow readers we let near the bytes. Telegram sends photos as JPEG; files people attach are
        nearly always one of these. Every other reader is attack surface for nothing (EPS hands the file to
        Ghostscript; dozens are rarely fuzzed). "TIFF" and "AVIF" work if added, but libtiff and libavif are
        large C decoders with a CVE history, and libtiff prints its complaints straight to stderr.
    """

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_side: int = 20_000
    formats: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "GIF", "BMP")


def load_image(data: bytes, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode `data` fully into an RGB image with EXIF orientation applied; raise ImageError otherwise."""
    if len(data) == 0:
        raise ImageError("empty_image")
    if len(data) > limits.max_bytes:
        raise ImageError("image_too_big_bytes", f"{len(data)} bytes > {limits.max_bytes}",
                         f"The file is too big ({len(data) / 2**20:.1f} MB; the limit is "
                         f"{limits.max_bytes / 2**20:.0f} MB). Please send a smaller or compressed picture.")

    # catch_warnings swaps the process-wide filters (not thread-safe before Python 3.14's context-aware
    # warnings); the window is one decode and the worst a race can do is print or hide a warning elsewhere.
    # Recording them keeps Pillow's DecompressionBombWarning and "corrupt EXIF" chatter off stderr; the
    # pixel check below is what actually rejects.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        img = _decode(data, limits)
    for w in caught:
        log.debug("pillow warning while decoding: %s", w.message)
    return img


def _decode(data: bytes, limits: ImageLimits) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data), formats=limits.formats)  # lazy: reads the header only
    except Image.UnidentifiedImageError as exc:
        raise ImageError("not_an_image", str(exc)) from exc
    except Image.DecompressionBombError as exc:  # Pillow's own cap, when ours is set above it
        raise ImageError("image_too_large", str(exc)) from exc
    except _DECODE_ERRORS as exc:  # recognised, but the header is broken
        raise ImageError("corrupt_image", f"{type(exc).__name__}: {exc}") from exc

    with im:
        width, height = im.size
        if width < 1 or height < 1:
            raise ImageError("corrupt_image", f"declared size {width}x{height}")
        if width * height > limits.max_pixels or max(width, height) > limits.max_side:
            raise ImageError("image_too_large", f"{width}x{height} exceeds {limits}",
                             f"The picture is too large ({width}×{height}). Please send one under "
                             f"{limits.max_pixels / 1e6:g} megapixels and {limits.max_side} pixels a side.")
        try:
            # Animated GIF/WebP/APNG: open() positions on frame 0 and load() decodes just that frame.
            # Without LOAD_TRUNCATED_IMAGES, load() raises on missing data instead of padding it with grey.
            im.load()
        except Image.DecompressionBombError as exc:  # a later frame/tile claiming more than the header
            raise ImageError("image_too_large", str(exc)) from exc
        except _DECODE_ERRORS as exc:
            raise ImageError("corrupt_image", f"{type(exc).__name__}: {exc}") from exc
        im = _apply_exif_orientation(im)
        try:
            return _to_rgb(im)
        except ValueError as exc:  # a mode Pillow cannot convert (none known today, but modes come from files)
            raise ImageError("unsupported_image", f"mode {im.mode}: {exc}") from exc


def _apply_exif_orientation(im: Image.Image) -> Image.Image:
    # A photo whose EXIF block is broken is still a good photo: keep it unrotated rather than reject it.
    try:
        return ImageOps.exif_transpose(im)
    except _DECODE_ERRORS as exc:
        log.debug("ignoring unreadable EXIF orientation: %s", exc)
        return im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode in ("I", "F") or im.mode.startswith("I;16"):
        im = _high_depth_to_l(im)
    if im.mode in ("RGBA", "LA", "PA", "RGBa") or "transparency" in im.info:
        # Flatten onto white: a plain convert("RGB") drops alpha and reveals whatever colour the transparent
        # pixels happen to store (usually black), turning a logo on a transparent background into a black box.
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")  # also copies, so the result never shares the file-backed image


def _high_depth_to_l(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer and float greyscale to 8-bit. Pillow's own convert("L") clips at 255, which
    turns most 16-bit photos white."""
    source_mode = im.mode
    im = im.convert("F")
    lo, hi = im.getextrema()
    if source_mode.startswith("I;16") or (lo >= 0 and 255 < hi <= 65535):
        scale, offset = 255 / 65535, 0.0  # full 16-bit range (Pillow may widen 16-bit data to "I")
    elif source_mode == "F" and lo >= 0 and 0 < hi <= 1:
        scale, offset = 255.0, 0.0  # float images in [0, 1], the usual convention
    elif lo >= 0 and hi <= 255:
        scale, offset = 1.0, 0.0  # already 8-bit values
    else:
        # Arbitrary range (negative or > 16-bit): stretch min..max. Contrast is then relative, which is the
        # usual way such scientific data is displayed; there is no "true" brightness to preserve.
        scale = 255 / (hi - lo) if hi > lo else 0.0
        offset = -lo * scale
    offset += 0.5  # convert("L") from "F" truncates; this makes it round
    return im.point(lambda x: x * scale + offset).convert("L")


def prepare_for_clip(img: Image.Image, image_size: int, max_aspect: float = 2.0) -> Image.Image:
    """Ready an RGB image for CLIP's preprocessing (model.vision.clip_pixels: bicubic resize of the short side,
    centre crop).

    Up to `max_aspect` (long/short side) the image is returned as it is, so the released model sees exactly the
    pixels it was trained on. Beyond it the centre crop would throw away most of the picture (99% of a
    10,000 x 100 panorama), so the short side is padded with the image's mean colour up to a *square*: the
    only shape the centre crop keeps whole. Padding only to `max_aspect` would still crop away half of it.
    The price is a jump at the threshold (an image at 2.01:1 is shown whole but smaller), which we accept:
    losing half of a picture is worse than letterboxing it.
    """
    if image_size <= 0 or max_aspect < 1:
        raise ValueError(f"need image_size > 0 and max_aspect >= 1, got {image_size}, {max_aspect}")
    if img.mode != "RGB":
        img = _to_rgb(img)
    width, height = img.size
    if max(width, height) <= max_aspect * min(width, height):
        return img

    # Padded, the long side is what the resize maps to image_size. Shrinking it to 4 x image_size first with a
    # proper low-pass filter saves the memory of a full-size square (a 20,000-pixel-wide strip would make
    # 400 MP). Only panoramas take this path: they are our extension, not the release's, so there are no
    # released pixels to stay equal to, and an ordinary photo is resized in one step (clip_pixels).
    cap = 4 * image_size
    if max(width, height) > cap:
        scale = cap / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        width, height = img.size
    side = max(width, height)
    mean = tuple(round(c) for c in ImageStat.Stat(img).mean)
    square = Image.new("RGB", (side, side), mean)
    square.paste(img, ((side - width) // 2, (side - height) // 2))
    return square
