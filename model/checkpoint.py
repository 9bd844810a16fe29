"""Building, saving and loading models. Our checkpoint format (see docs/model.md):

    folder/config.json          OmniFusionConfig
    folder/adapter.safetensors  transformer_layer.*, linear.* (released names) + SOI, EOI, USER, BOT
    folder/vision.safetensors   the open_clip vision tower up to the feature layer
    folder/llm/                 the LLM and its tokenizer as a transformers folder

Serving never unpickles: everything here is safetensors or JSON (only model/convert.py reads pickles).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModelForCausalLM, BitsAndBytesConfig, MistralConfig, MistralForCausalLM

from model.config import OmniFusionConfig, preset_config
from model.dialog import SPECIALS
from model.omnifusion import OmniFusion
from model.tokenizer import build_tiny_tokenizer, load_tokenizer

log = logging.getLogger(__name__)

CONFIG_FILE, ADAPTER_FILE, VISION_FILE = "config.json", "adapter.safetensors", "vision.safetensors"


def resolve_device(name: str | torch.device = "auto") -> torch.device:
    if str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("DEVICE=cuda but no CUDA device is visible; use DEVICE=auto or cpu")
    return device


def resolve_dtype(device: torch.device, dtype: torch.dtype | str | None = None) -> torch.dtype:
    if isinstance(dtype, str):
        dtype = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                 "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[dtype]
    return dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)


def load_state_checked(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Copy weights with shape checks; every problem is named, not just the first."""
    own = module.state_dict()
    problems = [f"missing {k}" for k in own if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in own]
    problems += [f"{k}: checkpoint {tuple(v.shape)} != model {tuple(own[k].shape)}"
                 for k, v in state.items() if k in own and v.shape != own[k].shape]
    if problems:
        raise ValueError(f"{what} does not fit the model: " + "; ".join(problems))
    module.load_state_dict(state)


def adapter_state(model: OmniFusion) -> dict[str, torch.Tensor]:
    state = {k: v.detach() for k, v in model.adapter.state_dict().items()}
    state.update({name: model.special[name].detach() for name in SPECIALS})
    return {k: v.contiguous().cpu() for k, v in state.items()}


def load_adapter_state(model: OmniFusion, state: dict[str, torch.Tensor], what: str) -> None:
    state = dict(state)
    special = {name: state.pop(name, None) for name in SPECIALS}
    absent = [n for n, v in special.items() if v is None]
    if absent:
        raise ValueError(f"{what} lacks the special vectors {', '.join(absent)}")
    load_state_checked(model.adapter, state, what)
    with torch.no_grad():
        for name, value in special.items():
            if value.shape != model.special[name].shape:
                raise ValueError(f"{what}: {name} is {tuple(value.shape)}, model wants {tuple(model.special[name].shape)}")
            model.special[name].copy_(value)


def _place(model: OmniFusion, device: torch.device, dtype: torch.dtype) -> OmniFusion:
    """Vision, adapter and vectors go where the LLM's embeddings are, in 16/32-bit even when the LLM is int8."""
    model.vision.to(device, dtype)
    model.adapter.to(device, dtype)
    model.special.to(device, model.dtype)
    return model.eval()


def _load_llm(folder: Path, device: torch.device, dtype: torch.dtype, load_in_8bit: bool, device_map=None):
    kwargs: dict = {"dtype": dtype}
    if load_in_8bit:
        # lm_head stays out of int8: logits are sensitive, and `llm_int8_skip_modules` replaces the default list.
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"])
    kwargs["device_map"] = device_map or {"": str(device) if device.type != "cuda" else device.index or 0}
    return AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)


def build_in_memory(cfg: OmniFusionConfig, device="auto", dtype=None, load_in_8bit: bool = False) -> OmniFusion:
    """Random weights from `cfg.seed` (tiny and bench presets), without touching the global RNG."""
    device = resolve_device(device)
    dtype = resolve_dtype(device, dtype)
    tokenizer = build_tiny_tokenizer(cfg.llm_vocab_size)
    cfg = cfg.replace(llm_vocab_size=len(tokenizer))  # the trained BPE may have fewer entries than asked
    llm_cfg = MistralConfig(
        vocab_size=cfg.llm_vocab_size, hidden_size=cfg.llm_hidden_size, intermediate_size=cfg.llm_intermediate_size,
        num_hidden_layers=cfg.llm_layers, num_attention_heads=cfg.llm_heads, num_key_value_heads=cfg.llm_kv_heads,
        max_position_embeddings=cfg.llm_max_context, sliding_window=None, tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        llm = MistralForCausalLM(llm_cfg)
        model = OmniFusion(cfg, llm, tokenizer)
        model.init_special()
    if load_in_8bit:  # through a folder: exactly the path real weights take
        with tempfile.TemporaryDirectory(prefix="omnifusion-int8-") as tmp:
            llm.save_pretrained(tmp)
            model.llm = _load_llm(Path(tmp), device, dtype, load_in_8bit=True)
    else:
        model.llm.to(device, dtype)
    return _place(model, device, dtype)


def save_pretrained(model: OmniFusion, folder: str | Path) -> None:
    folder = Path(folder)
    if getattr(model.llm, "is_loaded_in_8bit", False):
        raise ValueError("an 8-bit model cannot be saved as a checkpoint; load it without LOAD_IN_8BIT first")
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save(folder / CONFIG_FILE)
    save_file(adapter_state(model), str(folder / ADAPTER_FILE), metadata={"format": "pt"})
    vision = {k: v.detach().contiguous().cpu() for k, v in model.vision.tower.state_dict().items()}
    save_file(vision, str(folder / VISION_FILE), metadata={"format": "pt"})
    model.llm.save_pretrained(folder / model.config.llm_subfolder)
    model.tokenizer.save_pretrained(folder / model.config.llm_subfolder)


def from_pretrained(folder: str | Path, device="auto", dtype=None, load_in_8bit: bool = False,
                    device_map=None) -> OmniFusion:
    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        hint = " (a released OmniFusion folder? convert it with `python -m model.convert SRC DST`)" \
            if (folder / "projection.pt").exists() else ""
        raise FileNotFoundError(f"{folder} has no {CONFIG_FILE}{hint}")
    cfg = OmniFusionConfig.load(folder / CONFIG_FILE)
    device = resolve_device(device)
    dtype = resolve_dtype(device, dtype)
    llm_folder = folder / cfg.llm_subfolder
    llm = _load_llm(llm_folder, device, dtype, load_in_8bit, device_map)
    model = OmniFusion(cfg, llm, load_tokenizer(llm_folder))
    load_adapter_state(model, load_file(str(folder / ADAPTER_FILE)), f"{folder / ADAPTER_FILE}")
    load_state_checked(model.vision.tower, load_file(str(folder / VISION_FILE)), f"{folder / VISION_FILE}")
    return _place(model, device, dtype)


def load_model(preset: str = "tiny", path: str | Path | None = None, load_in_8bit: bool = False,
               device="auto", dtype=None) -> OmniFusion:
    """What the worker and the CLI call: a checkpoint folder if given, else an in-memory preset."""
    if path:
        return from_pretrained(path, device=device, dtype=dtype, load_in_8bit=load_in_8bit)
    cfg = preset_config(preset)
    if not cfg.llm_build_in_memory:
        raise ValueError(f"preset {preset!r} needs real weights: set MODEL_PATH to a converted checkpoint folder")
    return build_in_memory(cfg, device=device, dtype=dtype, load_in_8bit=load_in_8bit)
