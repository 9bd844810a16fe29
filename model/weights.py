"""The files of our checkpoint format and the weight plumbing behind them (see docs/model.md):

    folder/config.json          OmniFusionConfig
    folder/adapter.safetensors  transformer_layer.*, linear.* (released names) + SOI, EOI, USER, BOT
    folder/vision.safetensors   the open_clip vision tower up to the feature layer
    folder/llm/                 the LLM and its tokenizer as a transformers folder

Serving never unpickles: everything here is safetensors or JSON (only model/release/ reads pickles). This module
knows nothing of the OmniFusion class (it takes any object with `.adapter`, `.special`, `.vision`, `.llm`), so
model/omnifusion.py can use it without an import cycle.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn
from transformers import AutoModelForCausalLM, BitsAndBytesConfig

from model.dialog import SPECIALS

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


def adapter_state(model) -> dict[str, torch.Tensor]:
    state = {k: v.detach() for k, v in model.adapter.state_dict().items()}
    state.update({name: model.special[name].detach() for name in SPECIALS})
    return {k: v.contiguous().cpu() for k, v in state.items()}


def load_adapter_state(model, state: dict[str, torch.Tensor], what: str) -> None:
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


def place(model, device: torch.device, dtype: torch.dtype) :
    """Vision, adapter and vectors go where the LLM's embeddings are, in 16/32-bit even when the LLM is int8."""
    model.vision.to(device, dtype)
    model.adapter.to(device, dtype)
    model.special.to(device, model.dtype)
    return model.eval()


class DamagedCheckpoint(ValueError):
    """A checkpoint file that exists but cannot be read (cut short by a failed copy, overwritten, not ours)."""

    def __init__(self, path: Path, exc: Exception):
        super().__init__(f"{path}: damaged or not a checkpoint file ({type(exc).__name__}: {exc}); "
                         "copy or train the checkpoint again")
        self.path = path


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        raise
    except Exception as exc:  # safetensors raises its own SafetensorError, and OSError for short reads
        raise DamagedCheckpoint(path, exc) from exc


def read_tokenizer(folder: Path):
    from model.tokenizer import load_tokenizer

    try:
        return load_tokenizer(folder)
    except FileNotFoundError:
        raise
    except Exception as exc:  # a truncated tokenizer.json is a UnicodeDecodeError or a JSON error deep inside
        files = ", ".join(sorted(p.name for p in Path(folder).glob("tokenizer*"))) or "the tokenizer"
        raise DamagedCheckpoint(Path(folder) / files, exc) from exc


def read_config(path: Path):
    from model.config import OmniFusionConfig

    try:
        return OmniFusionConfig.load(path)
    except (ValueError, TypeError, UnicodeDecodeError) as exc:  # broken JSON, or keys of another program
        raise DamagedCheckpoint(path, exc) from exc


def load_llm(folder: Path, device: torch.device, dtype: torch.dtype, load_in_8bit: bool, device_map=None):
    kwargs: dict = {"dtype": dtype}
    if load_in_8bit:
        # lm_head stays out of int8: logits are sensitive, and `llm_int8_skip_modules` replaces the default list.
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=["lm_head"])
    kwargs["device_map"] = device_map or {"": str(device) if device.type != "cuda" else device.index or 0}
    try:
        return AutoModelForCausalLM.from_pretrained(str(folder), **kwargs)
    except Exception as exc:  # transformers and safetensors raise OSError, ValueError or SafetensorError
        if not (Path(folder) / "config.json").is_file():
            raise FileNotFoundError(f"{folder} holds no LLM (no config.json)") from exc
        # transformers says what failed but often not in which file: name the folder's weight files
        files = ", ".join(sorted(p.name for p in Path(folder).glob("*.safetensors"))) or "its weight files"
        raise DamagedCheckpoint(Path(folder) / files, exc) from exc
