"""Getting a model to serve or train: an in-memory preset with random weights, or a checkpoint folder
(`OmniFusion.from_pretrained`, files in model/weights.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from transformers import MistralConfig, MistralForCausalLM, PreTrainedTokenizerBase

from model.config import OmniFusionConfig, preset_config
from model.omnifusion import OmniFusion
from model.tokenizer import build_tiny_tokenizer
from model.weights import load_llm, place, resolve_device, resolve_dtype

# Presets whose weights ship with the code (trained by `make demo-model`, docs/demo-model.md).
PACKAGED = {"demo": Path(__file__).resolve().parent / "checkpoints" / "demo"}


def build_in_memory(cfg: OmniFusionConfig, device="auto", dtype=None, load_in_8bit: bool = False,
                    tokenizer: PreTrainedTokenizerBase | None = None) -> OmniFusion:
    """Random weights from `cfg.seed` (tiny and bench presets, or the start of a training recipe with its own
    `tokenizer`), without touching the global RNG."""
    device = resolve_device(device)
    dtype = resolve_dtype(device, dtype)
    tokenizer = tokenizer or build_tiny_tokenizer(cfg.llm_vocab_size)
    cfg = cfg.replace(llm_vocab_size=len(tokenizer))  # the trained BPE may have fewer entries than asked
    llm_cfg = MistralConfig(
        vocab_size=cfg.llm_vocab_size, hidden_size=cfg.llm_hidden_size, intermediate_size=cfg.llm_intermediate_size,
        num_hidden_layers=cfg.llm_layers, num_attention_heads=cfg.llm_heads, num_key_value_heads=cfg.llm_kv_heads,
        max_position_embeddings=cfg.llm_max_context, rope_theta=cfg.llm_rope_theta, sliding_window=None,
        tie_word_embeddings=False,
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
            model.llm = load_llm(Path(tmp), device, dtype, load_in_8bit=True)
    else:
        model.llm.to(device, dtype)
    return place(model, device, dtype)


def load_model(preset: str = "tiny", path: str | Path | None = None, load_in_8bit: bool = False,
               device="auto", dtype=None) -> OmniFusion:
    """What the worker and the CLI call: a checkpoint folder if given, else the preset (weights shipped with
    the code, or random ones built in memory)."""
    if path:
        return OmniFusion.from_pretrained(path, device=device, dtype=dtype, load_in_8bit=load_in_8bit)
    cfg = preset_config(preset)
    if preset in PACKAGED:
        if not (PACKAGED[preset] / "config.json").is_file():
            raise FileNotFoundError(f"the {preset} model is missing from {PACKAGED[preset]}: `make demo-model` "
                                    "trains it again (about 15 minutes on a CPU)")
        return OmniFusion.from_pretrained(PACKAGED[preset], device=device, dtype=dtype, load_in_8bit=load_in_8bit)
    if not cfg.llm_build_in_memory:
        raise ValueError(f"preset {preset!r} needs real weights: set MODEL_PATH to a converted checkpoint folder")
    return build_in_memory(cfg, device=device, dtype=dtype, load_in_8bit=load_in_8bit)
