"""model.vision.clip_pixels gives exactly the pixels of the release's preprocessing: transformers'
CLIPImageProcessor, PIL path (the class of transformers 4.36; `CLIPImageProcessorPil` in 5.x), built here with the
released CLIP-336 settings (no download)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageChops
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PILImageResampling
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

from model.config import preset_config
from model.vision import VisionEncoder, clip_pixels


def released_processor(size: int = 336) -> CLIPImageProcessorPil:
    """openai/clip-vit-large-patch14-336's preprocessor_config.json, with the size as a parameter."""
    return CLIPImageProcessorPil(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                 resample=PILImageResampling.BICUBIC, image_mean=OPENAI_CLIP_MEAN,
                                 image_std=OPENAI_CLIP_STD, do_resize=True, do_center_crop=True, do_rescale=True,
                                 rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True)


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """Smooth shapes plus grain: every resize and crop offset shows in the pixels. Built by Pillow, in C (the
    grain is one small noise tile repeated), so that a 12 MP photo takes milliseconds."""
    rng = np.random.default_rng(seed)
    base = Image.fromarray(rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3), dtype=np.uint8))
    tile = Image.fromarray(rng.integers(104, 153, (251, 241, 3), dtype=np.uint8))  # centred on 128
    grain = Image.new("RGB", (width, height))
    for x in range(0, width, tile.width):
        for y in range(0, height, tile.height):
            grain.paste(tile, (x, y))
    return ImageChops.add(base.resize((width, height), Image.Resampling.BILINEAR), grain, offset=-128)


def reference(image: Image.Image, size: int = 336) -> torch.Tensor:
    return torch.from_numpy(released_processor(size)(image, return_tensors="np")["pixel_values"][0])


# 451 x 336 and 336 x 451: resized long side - 336 = 115 = 3 (mod 4), where a rounded crop offset is a row off.
# 2000 x 1500 and 4032 x 3024: what the earlier LANCZOS pre-shrink changed. The rest: odd and tiny sizes, an
# upscale, exactly 2:1 (the widest shape left unpadded).
@pytest.mark.parametrize("size", [(451, 336), (336, 451), (2000, 1500), (4032, 3024), (641, 479), (999, 667),
                                  (337, 501), (7, 5), (100, 60), (500, 500), (1000, 500)])
def test_pixels_equal_the_released_processor(size):
    image = photo(*size)
    ours = clip_pixels(image, 336)
    assert ours.shape == (3, 336, 336) and ours.dtype == torch.float32
    assert torch.equal(ours, reference(image))


@pytest.mark.parametrize("image_size", [48, 112, 224])
def test_any_image_size(image_size):
    """The in-memory presets use other sizes; the same rule holds for each."""
    for seed, size in enumerate([(451, 336), (333, 555), (1280, 720)]):
        image = photo(*size, seed=seed)
        assert torch.equal(clip_pixels(image, image_size), reference(image, image_size)), (image_size, size)


def test_the_crop_offset_is_floored_not_rounded():
    """A 451 x 336 image whose columns are numbered: the crop must start at column (451 - 336) // 2 = 57."""
    columns = np.tile(np.arange(451, dtype=np.uint8)[None, :, None], (336, 1, 3))
    pixels = clip_pixels(Image.fromarray(columns), 336)
    first = pixels[0, 0, 0].item() * OPENAI_CLIP_STD[0] + OPENAI_CLIP_MEAN[0]
    assert round(first * 255) == 57


def test_the_vision_encoder_uses_it():
    cfg = preset_config("tiny")
    encoder = VisionEncoder(cfg)
    images = [photo(451, 336), photo(90, 170, seed=1)]
    batch = encoder.preprocess(images)
    assert batch.shape == (2, 3, cfg.vision_image_size, cfg.vision_image_size)
    for row, image in zip(batch, images, strict=True):
        assert torch.equal(row, reference(image, cfg.vision_image_size))
