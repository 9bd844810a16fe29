"""CLIP vision encoder (open_clip): patch features of the second-to-last block, CLS dropped.

The released OmniFusion takes `hidden_states[-2]` of openai/clip-vit-large-patch14-336: the output of block 23
of 24. Blocks after the feature layer, `ln_post` and `proj` are never used, so they are not even built.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import open_clip
import torch
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.model import CLIPVisionCfg, _build_vision_tower
from PIL import Image
from torch import nn

from model.config import PRESETS, OmniFusionConfig
from model.images import prepare_for_clip

_MEAN = np.array(OPENAI_DATASET_MEAN, dtype=np.float32)
_STD = np.array(OPENAI_DATASET_STD, dtype=np.float32)


def clip_geometry(width: int, height: int, image_size: int) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """Where clip_pixels puts a width x height picture: (resized size, crop box). Also what the vision stage's
    instance masks go through (training/vision_stage.py), so a label lands on the pixel it describes."""
    if width <= height:
        size = (image_size, int(image_size * height / width))
    else:
        size = (int(image_size * width / height), image_size)
    left, top = (size[0] - image_size) // 2, (size[1] - image_size) // 2
    return size, (left, top, left + image_size, top + image_size)


def clip_pixels(image: Image.Image, image_size: int, max_aspect: float = 2.0) -> torch.Tensor:  # [3, S, S]
    """The pixels transformers' CLIPImageProcessor gave the release (transformers 4.36, its PIL path; in 5.x
    that path is `CLIPImageProcessorPil`), bit for bit: bicubic resize of the short side to `image_size` (long
    side truncated), centre crop with a *floored* offset, x / 255 in float64 then float32, (x - mean) / std.

    Written out rather than taken from open_clip's transform, which differs twice: torchvision's CenterCrop
    rounds the offset (one pixel row off whenever resized long side - image_size = 3 mod 4), and it would need
    our earlier pre-shrink to be fast. One PIL resize of a 4032 x 3024 photo takes ~70 ms here. Panoramas past
    `max_aspect` are padded to a square first (prepare_for_clip), our one departure from the release.
    """
    image = prepare_for_clip(image, image_size, max_aspect)
    size, box = clip_geometry(*image.size, image_size)
    image = image.resize(size, Image.Resampling.BICUBIC).crop(box)
    pixels = (np.asarray(image, dtype=np.float64) * (1 / 255)).astype(np.float32)  # [S, S, 3]
    return torch.from_numpy(((pixels - _MEAN) / _STD).transpose(2, 0, 1).copy())


def _open_clip_entry(cfg: OmniFusionConfig) -> dict:
    return {"embed_dim": cfg.vision_width, "quick_gelu": cfg.vision_quick_gelu,
            "vision_cfg": {"image_size": cfg.vision_image_size, "layers": cfg.vision_layers,
                           "width": cfg.vision_width, "patch_size": cfg.vision_patch_size,
                           "head_width": cfg.vision_width // cfg.vision_heads,
                           "mlp_ratio": cfg.vision_mlp_ratio},
            # open_clip wants a text tower in every model config; ours is never built.
            "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}}


def register_small_vits() -> None:
    """Register the in-memory presets' ViTs with open_clip, so `open_clip.get_model_config` knows them too."""
    missing = {c.vision_model: c for c in PRESETS.values()
               if c.llm_build_in_memory and open_clip.get_model_config(c.vision_model) is None}
    if not missing:
        return
    folder = Path(tempfile.mkdtemp(prefix="omnifusion-open-clip-"))
    for name, cfg in missing.items():
        (folder / f"{name}.json").write_text(json.dumps(_open_clip_entry(cfg)))
    open_clip.add_model_config(folder)


def _check_geometry(cfg: OmniFusionConfig) -> None:
    known = open_clip.get_model_config(cfg.vision_model)
    if known is None:
        return
    v = known["vision_cfg"]
    ours = {"image_size": cfg.vision_image_size, "layers": cfg.vision_layers, "width": cfg.vision_width,
            "patch_size": cfg.vision_patch_size}
    theirs = {k: v.get(k) for k in ours}
    if ours != theirs or bool(known.get("quick_gelu", False)) != cfg.vision_quick_gelu:
        raise ValueError(f"config's vision geometry {ours} (quick_gelu={cfg.vision_quick_gelu}) does not match "
                         f"open_clip's {cfg.vision_model}: {theirs} (quick_gelu={known.get('quick_gelu', False)})")


class VisionEncoder(nn.Module):
    def __init__(self, cfg: OmniFusionConfig):
        super().__init__()
        register_small_vits()
        _check_geometry(cfg)
        vision_cfg = CLIPVisionCfg(**_open_clip_entry(cfg)["vision_cfg"])
        tower = _build_vision_tower(cfg.vision_width, vision_cfg, quick_gelu=cfg.vision_quick_gelu)
        keep = cfg.vision_layers + 1 + cfg.vision_feature_layer  # -2 -> all blocks but the last
        if not 1 <= keep <= cfg.vision_layers:
            raise ValueError(f"vision_feature_layer {cfg.vision_feature_layer} is outside the tower")
        tower.transformer.resblocks = tower.transformer.resblocks[:keep]
        tower.ln_post, tower.proj = nn.Identity(), None
        self.tower = tower
        self.image_size = cfg.vision_image_size
        self.max_aspect = cfg.vision_max_aspect

    def preprocess(self, images: list[Image.Image]) -> torch.Tensor:
        """RGB PIL images -> [B, 3, S, S], as the release's CLIPImageProcessor (see clip_pixels)."""
        return torch.stack([clip_pixels(img, self.image_size, self.max_aspect) for img in images])

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        t = self.tower
        x = t.conv1(pixel_values.to(t.conv1.weight.dtype))  # [B, W, g, g]
        x = x.flatten(2).transpose(1, 2)  # [B, g*g, W]
        cls = t.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + t.positional_embedding.to(x.dtype)  # [B, 1+N, W]
        x = t.ln_pre(x)
        x = t.transformer(x)  # [B, 1+N, W] after the feature layer
        return x[:, 1:]  # [B, N, W]
