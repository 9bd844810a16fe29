"""The released LLM folder -> DST/llm/: safetensors shards hard-linked (1.1's tuned-model/), pickled `.bin`
state-dict shards rewritten as safetensors (1.0's OmniMistral-model/), plus the release's tokenizer files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

TOKENIZER_FILES = {"tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json"}
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".ckpt"}
SAFETENSORS_INDEX = "model.safetensors.index.json"


def _link_or_copy(src: Path, dst: Path) -> bool:
    """Hard link when SRC and DST share a file system (no extra 14.5 GB; the shards are never written in
    place, so sharing them is safe); otherwise copy. -> whether it linked."""
    try:
        os.link(src, dst)
        return True
    except OSError:
        shutil.copy2(src, dst)
        return False


def _read_state_dict(shard: Path) -> dict[str, torch.Tensor]:
    """torch's weights-only unpickler: tensors and plain containers only, no code runs. mmap keeps a 5 GB shard
    out of RAM until it is written; files older than torch 1.6's zip format cannot be mapped."""
    try:
        try:
            state = torch.load(shard, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(shard, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types here; the cause matters to the user, not the type
        raise ValueError(f"cannot read {shard} as a state dict of tensors: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor)
                                              for k, v in state.items()):
        raise ValueError(f"{shard} does not hold a plain state dict of tensors")
    return state


def _unshared(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied or sliced weights); give each its own copy."""
    seen, out = set(), {}
    for key, tensor in state.items():
        ptr = tensor.untyped_storage().data_ptr()
        out[key] = (tensor.clone() if ptr in seen else tensor).contiguous()
        seen.add(ptr)
    return out


def safetensors_from_bin(bins: list[Path], out: Path, echo) -> None:
    """`pytorch_model*.bin` -> `model-0000i-of-0000n.safetensors` + index, the names transformers looks for."""
    weight_map, total = {}, 0
    for i, shard in enumerate(bins, 1):
        name = "model.safetensors" if len(bins) == 1 else f"model-{i:05d}-of-{len(bins):05d}.safetensors"
        state = _unshared(_read_state_dict(shard))
        save_file(state, str(out / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(state, name))
        total += sum(t.numel() * t.element_size() for t in state.values())
        echo(f"LLM: {shard.name} -> {name} ({len(state)} tensors)")
        del state
    if len(bins) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (out / SAFETENSORS_INDEX).write_text(json.dumps(index, indent=2))


def check_embeddings(folder: Path, llm_cfg) -> None:
    """The embedding matrix has the shape config.json gives (header only: cheap even for 5 GB shards)."""
    for shard in sorted(folder.glob("*.safetensors")):
        with safe_open(str(shard), "pt") as f:
            for key in f.keys():
                if key.endswith("embed_tokens.weight"):
                    shape = tuple(f.get_slice(key).get_shape())
                    want = (llm_cfg.vocab_size, llm_cfg.hidden_size)
                    if shape != want:
                        raise ValueError(f"{shard.name}: {key} is {shape}, config.json says {want}")


def write_llm(llm: Path, tokenizer: Path, out: Path, echo) -> None:
    out.mkdir()
    safetensors = sorted(llm.glob("*.safetensors"))
    bins = sorted(p for p in llm.glob("*.bin") if p.is_file())
    if not safetensors and not bins:
        raise ValueError(f"{llm} has neither *.safetensors nor pickled *.bin weights")
    if not safetensors:
        safetensors_from_bin(bins, out, echo)
    linked = copied = 0
    for f in sorted(llm.iterdir()):
        # Pickled weights stay behind (serving reads safetensors only), with their index, and so does any
        # tokenizer the fine-tune folder may carry: the release's own tokenizer folder is the one it trained with.
        skip = f.suffix in PICKLE_SUFFIXES or f.name.endswith(".bin.index.json") or f.name in TOKENIZER_FILES
        if f.is_file() and not skip:
            if _link_or_copy(f, out / f.name):
                linked += 1
            else:
                copied += 1
    echo(f"LLM: {linked} files hard-linked, {copied} copied from {llm}")
    names = [f for f in sorted(tokenizer.iterdir()) if f.is_file()]
    if not {"tokenizer.model", "tokenizer.json"} & {f.name for f in names}:
        raise ValueError(f"{tokenizer} has neither tokenizer.model nor tokenizer.json")
    for f in names:
        shutil.copy2(f, out / f.name)
