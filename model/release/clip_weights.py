"""CLIP vision weights from a local folder -> open_clip names, plus the geometry they imply.

The release does not ship CLIP; it used openai/clip-vit-large-patch14-336 through Hugging Face transformers.
We accept that layout (config.json + model.safetensors or pytorch_model.bin, `vision_model.*` keys, or bare
`embeddings.*` / `encoder.*` as transformers 5 saves a CLIPVisionModel) and open_clip checkpoints
(`visual.*` keys, geometry from open_clip_config.json).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import CLIPVisionConfig

# Tried in this order when --clip names a folder.
WEIGHT_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin",
                "open_clip_pytorch_model.bin")
_HF_ANCHOR, _OPEN_CLIP_ANCHOR = "embeddings.patch_embedding.weight", "conv1.weight"


@dataclass
class ClipWeights:
    state: dict[str, torch.Tensor]  # open_clip names, every block of the tower
    image_size: int
    patch_size: int
    width: int
    layers: int
    heads: int
    mlp_ratio: float
    quick_gelu: bool
    source: str  # "transformers" | "open_clip", for messages


def _weights_file(path: Path) -> Path:
    if path.is_file():
        return path
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    raise FileNotFoundError(f"{path} has none of {', '.join(WEIGHT_FILES)}")


def _read(file: Path) -> dict[str, torch.Tensor]:
    if file.suffix == ".safetensors":
        with safe_open(str(file), "pt") as f:
            # Only the vision tower: a full CLIP checkpoint also holds the text tower we never use.
            return {k: f.get_tensor(k) for k in f.keys() if not k.startswith(("text_model.", "text_projection"))}
    try:  # torch's weights-only unpickler: a state dict needs nothing else, and it runs no code
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types here; the cause matters to the user, not the type
        raise ValueError(f"cannot read {file} as a state dict (a TorchScript archive? use the Hugging Face "
                         f"copy of the weights): {exc}") from exc
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise ValueError(f"{file} does not hold a state dict")
    return state


def _strip(state: dict[str, torch.Tensor], anchor: str) -> dict[str, torch.Tensor] | None:
    """Keys under the prefix that `anchor` sits at (e.g. `vision_model.` or `visual.`), prefix removed."""
    hits = [k[: -len(anchor)] for k in state if k.endswith(anchor)]
    if not hits:
        return None
    prefix = min(hits, key=len)
    return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}


def _hf_to_open_clip(hf: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    def take(name: str) -> torch.Tensor:
        if name not in hf:
            raise ValueError(f"the CLIP checkpoint lacks {name}")
        return hf[name]

    out = {"class_embedding": take("embeddings.class_embedding"),
           "conv1.weight": take("embeddings.patch_embedding.weight"),
           "positional_embedding": take("embeddings.position_embedding.weight")}
    for p in ("weight", "bias"):
        out[f"ln_pre.{p}"] = take(f"pre_layrnorm.{p}")
    renames = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "mlp.fc1": "mlp.c_fc",
               "mlp.fc2": "mlp.c_proj", "layer_norm2": "ln_2"}
    for i in range(layers):
        src, dst = f"encoder.layers.{i}.", f"transformer.resblocks.{i}."
        # nn.MultiheadAttention keeps q, k and v as one matrix, in that order.
        out[dst + "attn.in_proj_weight"] = torch.cat([take(f"{src}self_attn.{x}_proj.weight") for x in "qkv"])
        out[dst + "attn.in_proj_bias"] = torch.cat([take(f"{src}self_attn.{x}_proj.bias") for x in "qkv"])
        for theirs, ours in renames.items():
            for p in ("weight", "bias"):
                out[f"{dst}{ours}.{p}"] = take(f"{src}{theirs}.{p}")
    return out


def _hf_geometry(folder: Path) -> dict:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder} has CLIP weights in the transformers layout but no config.json")
    model_type = json.loads(config_file.read_text()).get("model_type")
    if model_type not in ("clip", "clip_vision_model"):
        raise ValueError(f"{config_file} describes a {model_type!r} model, not CLIP")
    c = CLIPVisionConfig.from_pretrained(str(folder))  # fills what older configs leave out with CLIP defaults
    if c.hidden_act not in ("quick_gelu", "gelu"):
        raise ValueError(f"{config_file}: hidden_act {c.hidden_act!r}; open_clip towers use quick_gelu or gelu")
    if c.layer_norm_eps != 1e-5 or c.num_channels != 3:
        raise ValueError(f"{config_file}: layer_norm_eps {c.layer_norm_eps} / num_channels {c.num_channels}; "
                         f"open_clip towers use 1e-5 and 3")
    return {"image_size": c.image_size, "patch_size": c.patch_size, "width": c.hidden_size,
            "layers": c.num_hidden_layers, "heads": c.num_attention_heads,
            "mlp_ratio": c.intermediate_size / c.hidden_size, "quick_gelu": c.hidden_act == "quick_gelu"}


def _open_clip_geometry(folder: Path, state: dict[str, torch.Tensor], fallback: dict | None) -> dict:
    """Heads and activation are not in the weights: they come from open_clip_config.json, or from `fallback`
    (the preset's geometry) when the shapes match it exactly."""
    width, _, patch, _ = state["conv1.weight"].shape
    grid = math.isqrt(state["positional_embedding"].shape[0] - 1)
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))}
    shapes = {"image_size": grid * patch, "patch_size": patch, "width": width, "layers": len(blocks),
              "mlp_ratio": state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0] / width}
    config_file = folder / "open_clip_config.json"
    if config_file.is_file():
        model_cfg = json.loads(config_file.read_text()).get("model_cfg", {})
        v = model_cfg.get("vision_cfg", {})
        geometry = {"image_size": v.get("image_size"), "patch_size": v.get("patch_size"), "width": v.get("width"),
                    "layers": v.get("layers"), "mlp_ratio": v.get("mlp_ratio", 4.0)}
        if geometry != shapes:
            raise ValueError(f"{config_file} says {geometry}, the weights say {shapes}")
        return {**shapes, "heads": width // v.get("head_width", 64), "quick_gelu": bool(model_cfg.get("quick_gelu"))}
    if fallback and all(fallback[k] == v for k, v in shapes.items()):
        return fallback
    raise ValueError(f"{folder} has no open_clip_config.json, and its shapes {shapes} are not the expected "
                     f"CLIP ViT-L/14-336, so attention heads and activation are unknown")


def load_clip(path: str | Path, fallback: dict | None = None) -> ClipWeights:
    """Read CLIP vision weights (a folder or one weights file). `fallback`: geometry assumed for an open_clip
    checkpoint that comes without its open_clip_config.json."""
    path = Path(path)
    file = _weights_file(path)
    raw = _read(file)
    if (hf := _strip(raw, _HF_ANCHOR)) is not None:
        geometry = _hf_geometry(file.parent)
        state, source = _hf_to_open_clip(hf, geometry["layers"]), "transformers"
    elif (state := _strip(raw, _OPEN_CLIP_ANCHOR)) is not None:
        geometry, source = _open_clip_geometry(file.parent, state, fallback), "open_clip"
    else:
        raise ValueError(f"{file} holds neither transformers CLIP keys (…{_HF_ANCHOR}) nor open_clip keys "
                         f"(visual.{_OPEN_CLIP_ANCHOR})")
    return ClipWeights(state=state, source=source, **geometry)
