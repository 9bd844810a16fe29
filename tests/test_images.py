"""model/images.py: every bad input either becomes a clean RGB image or an ImageError with a stable code.

Every image is drawn here, in memory; no fixture files.
"""

from __future__ import annotations

import io
import random
import struct
import warnings
import zlib

import pytest
from PIL import Image

from model.images import IMAGE_ERROR_CODES, ImageError, ImageLimits, load_image, prepare_for_clip

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def encode(img: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def error_code(data: bytes, limits: ImageLimits = ImageLimits()) -> str:
    with pytest.raises(ImageError) as info:
        load_image(data, limits)
    assert info.value.code in IMAGE_ERROR_CODES and info.value.message  # a sentence for the user, always
    return info.value.code


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming any size, with no pixel data at all: a decompression bomb's
    header. Decoding it would fail, so image_too_large proves the size was checked first."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def close(pixel, expected, tol: int = 12) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, expected, strict=True))


# ---- rejections --------------------------------------------------------------------------------------------

def test_zero_bytes_is_empty_image():
    assert error_code(b"") == "empty_image"


@pytest.mark.parametrize("data", [
    random.Random(0).randbytes(4096),
    b"Hello, this is a plain text message, not a picture.\n" * 20,
    b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
    encode(Image.new("RGB", (8, 8)), "PPM"),  # real images, but formats outside the default allowlist
    encode(Image.new("RGB", (8, 8)), "TIFF"),
], ids=["random", "text", "pdf", "ppm", "tiff"])
def test_non_images_are_not_an_image(data):
    assert error_code(data) == "not_an_image"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
def test_truncated_files_are_corrupt(fmt):
    data = encode(Image.effect_noise((64, 64), 60).convert("RGB"), fmt)
    assert error_code(data[: len(data) // 2]) == "corrupt_image"


def test_byte_cap():
    data = encode(Image.effect_noise((64, 64), 60).convert("RGB"), "PNG")
    assert error_code(data, ImageLimits(max_bytes=len(data) - 1)) == "image_too_big_bytes"
    assert load_image(data, ImageLimits(max_bytes=len(data))).size == (64, 64)


@pytest.mark.parametrize("width,height", [(100_000, 100_000), (10_000, 10_000), (30_000, 10)])
def test_bomb_headers_rejected_before_decoding_and_silently(width, height, capfd):
    # 10^10 px trips Pillow's own DecompressionBombError, 10^8 px only its warning, 30000x10 our side cap.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert error_code(png_header_only(width, height)) == "image_too_large"
    assert caught == []
    assert capfd.readouterr().err == ""


def test_real_image_over_a_lower_pixel_cap():
    data = encode(Image.new("RGB", (400, 300), RED), "JPEG")
    assert error_code(data, ImageLimits(max_pixels=400 * 300 - 1)) == "image_too_large"
    assert error_code(data, ImageLimits(max_side=399)) == "image_too_large"
    assert load_image(data, ImageLimits(max_pixels=400 * 300)).size == (400, 300)


# ---- repairs -----------------------------------------------------------------------------------------------

def test_alpha_is_composited_onto_white():
    img = Image.new("RGBA", (4, 1), (0, 0, 0, 0))  # transparent *black*: must not come out black
    img.putpixel((1, 0), (255, 0, 0, 255))
    img.putpixel((2, 0), (255, 0, 0, 128))
    out = load_image(encode(img, "PNG"))
    assert out.mode == "RGB"
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == RED
    assert close(out.getpixel((2, 0)), (255, 127, 127), tol=2)


def test_la_and_palette_transparency_become_white():
    la = Image.new("LA", (2, 1), (0, 0))
    la.putpixel((1, 0), (0, 255))
    assert list(load_image(encode(la, "PNG")).getdata()) == [(255, 255, 255), (0, 0, 0)]

    pal = Image.new("P", (2, 1), 0)
    pal.putpalette([0, 0, 0, 0, 0, 255])  # index 0 black (transparent), index 1 blue
    pal.putpixel((1, 0), 1)
    for fmt in ("PNG", "GIF"):
        out = load_image(encode(pal, fmt, transparency=0))
        assert list(out.getdata()) == [(255, 255, 255), BLUE], fmt


def test_rgb_png_with_trns_colour_key():
    img = Image.new("RGB", (2, 1), (0, 0, 0))
    img.putpixel((1, 0), GREEN)
    out = load_image(encode(img, "PNG", transparency=(0, 0, 0)))
    assert list(out.getdata()) == [(255, 255, 255), GREEN]


def test_palette_and_greyscale_become_rgb():
    pal = Image.new("RGB", (4, 4), BLUE).convert("P", palette=Image.Palette.ADAPTIVE)
    assert load_image(encode(pal, "PNG")).getpixel((0, 0)) == BLUE
    assert load_image(encode(Image.new("L", (4, 4), 77), "PNG")).getpixel((0, 0)) == (77, 77, 77)
    assert load_image(encode(Image.new("1", (4, 4), 1), "BMP")).getpixel((0, 0)) == (255, 255, 255)


def test_16_bit_greyscale_is_scaled_not_clipped():
    img = Image.new("I;16", (3, 1))
    for x, value in enumerate((0, 32896, 65535)):
        img.putpixel((x, 0), value)
    out = load_image(encode(img, "PNG"))
    assert [p[0] for p in out.getdata()] == [0, 128, 255]  # Pillow's convert("L") would give 0, 255, 255


def test_float_and_wide_int_greyscale():
    tiff = ImageLimits(formats=("TIFF",))  # only TIFF carries these modes, and it is opt-in
    unit = Image.new("F", (2, 1), 0.0)
    unit.putpixel((1, 0), 0.5)
    assert [p[0] for p in load_image(encode(unit, "TIFF"), tiff).getdata()] == [0, 128]
    wide = Image.new("I", (2, 1), -1000)
    wide.putpixel((1, 0), 1_000_000)
    assert [p[0] for p in load_image(encode(wide, "TIFF"), tiff).getdata()] == [0, 255]


def test_cmyk_jpeg_becomes_rgb():
    out = load_image(encode(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "JPEG", quality=95))
    assert out.mode == "RGB"
    assert close(out.getpixel((8, 8)), (0, 255, 255))


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_gives_first_frame(fmt):
    frames = [Image.new("RGB", (16, 16), RED), Image.new("RGB", (16, 16), BLUE)]
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 2  # really animated
    out = load_image(data)
    assert out.mode == "RGB"
    assert close(out.getpixel((8, 8)), RED)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (40, 20), RED)
    img.paste(BLUE, (20, 0, 40, 20))  # left red, right blue
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the left edge ends up on top
    out = load_image(encode(img, "JPEG", exif=exif, quality=95))
    assert out.size == (20, 40)
    assert close(out.getpixel((10, 5)), RED, tol=30)
    assert close(out.getpixel((10, 35)), BLUE, tol=30)


# ---- nothing but ImageError, ever --------------------------------------------------------------------------

def test_fuzz_only_images_or_image_errors():
    rng = random.Random(20240611)
    sources = []
    for fmt in ("JPEG", "PNG", "GIF", "WEBP"):
        img = Image.effect_noise((48, 32), 80).convert("RGB")
        sources.append(encode(img, fmt, save_all=True, append_images=[img.rotate(90)]) if fmt == "GIF"
                       else encode(img, fmt))
    cases = []
    for data in sources:
        cases += [data[: rng.randrange(len(data))] for _ in range(40)]
        for _ in range(15):  # a few flipped bytes anywhere, header included
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            cases.append(bytes(mutated))
    for magic in (b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP", b"BM"):
        cases += [magic + rng.randbytes(rng.randrange(1, 300)) for _ in range(5)]
    assert len(cases) >= 200

    limits = ImageLimits(max_pixels=1_000_000)  # keeps a mutated header from costing a big allocation
    outcomes = {"ok": 0}
    for data in cases:
        try:
            img = load_image(data, limits)
        except ImageError as exc:
            assert exc.code in IMAGE_ERROR_CODES
            outcomes[exc.code] = outcomes.get(exc.code, 0) + 1
        else:
            assert img.mode == "RGB" and img.width > 0 and img.height > 0
            outcomes["ok"] += 1
    assert outcomes["ok"] > 0 and outcomes.get("corrupt_image", 0) > 0, outcomes


# ---- prepare_for_clip --------------------------------------------------------------------------------------

def test_ordinary_aspects_are_left_to_the_released_pipeline():
    img = Image.effect_noise((300, 200), 60).convert("RGB")
    assert prepare_for_clip(img, 336) is img
    tall = Image.new("RGB", (100, 200), GREEN)  # exactly max_aspect
    assert prepare_for_clip(tall, 336) is tall
    big = Image.new("RGB", (4032, 3024), RED)  # no pre-shrink: CLIP's one bicubic resize sees the photo itself
    assert prepare_for_clip(big, 336) is big


def test_panorama_is_seen_whole_after_the_centre_crop():
    torch = pytest.importorskip("torch")
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from model.vision import clip_pixels

    pano = Image.new("RGB", (10_000, 100), GREEN)
    pano.paste(RED, (0, 0, 2000, 100))
    pano.paste(BLUE, (8000, 0, 10_000, 100))
    prepared = prepare_for_clip(pano, 336)
    assert prepared.mode == "RGB" and prepared.width == prepared.height <= 4 * 336  # shrunk before padding

    tensor = clip_pixels(pano, 336)  # [3, 336, 336]
    pixels = tensor * torch.tensor(OPENAI_DATASET_STD)[:, None, None] + torch.tensor(OPENAI_DATASET_MEAN)[:, None, None]
    row = pixels[:, 168, :]  # the centre row crosses the panorama's band
    left, right = row[:, 20].tolist(), row[:, 315].tolist()
    assert left[0] > 0.75 and left[1] < 0.25 and left[2] < 0.25, left
    assert right[2] > 0.75 and right[0] < 0.25 and right[1] < 0.25, right
    top = pixels[:, 10, 168].tolist()  # padding: the panorama's mean colour, not black
    assert close([round(c * 255) for c in top], (51, 153, 51), tol=3), top


def test_extreme_strip_and_non_rgb_input():
    out = prepare_for_clip(Image.new("RGBA", (20_000, 1), (0, 0, 0, 0)), 224)
    assert out.mode == "RGB" and out.size == (896, 896)
    assert out.getpixel((0, 448)) == (255, 255, 255)  # transparent strip flattened onto white
    with pytest.raises(ValueError):
        prepare_for_clip(out, 224, max_aspect=0.5)
