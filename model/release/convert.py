"""Convert a released OmniFusion folder into our checkpoint format (see docs/convert.md).

    python -m model.convert OmniMistral-v1_1 omnifusion-1.1 --clip clip-vit-large-patch14-336

Finds the layout (layouts.py: OmniFusion-1.1, or 1.0 at the repository root), reads the adapter and
special_embeddings.pt (pickles: the restricted unpickler in pickles.py), CLIP from --clip (not part of the
release), links or converts the LLM shards and copies the tokenizer files into DST/llm/ (llm_folder.py), and
writes config.json, adapter.safetensors and vision.safetensors. Every shape of the adapter and CLIP is checked
against the modules we build from the inferred config before anything is written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn
from transformers import AutoConfig

from model.adapter import Adapter
from model.config import RELEASED_PROMPT, OmniFusionConfig, preset_config
from model.dialog import SPECIALS
from model.release.clip_weights import ClipWeights, load_clip
from model.release.layouts import V1_0, find_layout
from model.release.llm_folder import check_embeddings, write_llm
from model.release.pickles import PICKLE_WARNING, ReleasedAdapter, load_projection, load_special
from model.tokenizer import encode_segment, load_tokenizer
from model.vision import VisionEncoder
from model.weights import ADAPTER_FILE, CONFIG_FILE, VISION_FILE, load_adapter_state, load_state_checked

CLIP_REPO = "openai/clip-vit-large-patch14-336"
MISSING_CLIP = (
    f"CLIP is not part of the OmniFusion release. Download {CLIP_REPO} (config.json and model.safetensors or "
    f"pytorch_model.bin), e.g.\n"
    f"    hf download {CLIP_REPO} config.json model.safetensors --local-dir clip-vit-large-patch14-336\n"
    f"and pass --clip clip-vit-large-patch14-336")
# Probes for the tokenizer check: the released prompt plus the other scripts and symbols users type, and the
# whitespace that a fast tokenizer converted from tokenizer.model splits differently (runs, tabs, indentation,
# a leading space).
TOKENIZER_PROBES = (RELEASED_PROMPT, "What is on this photo?", "Что изображено на картинке?",
                    "In 2024: 3.14 + x = «42»\n- item", "a  b   c    d", "\tkey:\tvalue\t\t",
                    "def f(x):\n    if x:\n        return 1\n\treturn 2", " leading space, trailing  ",
                    "Ёжик  в тумане\n  — да", "emoji 😀👍🏽 and 🇷🇺 flags", "line\r\nbreaks\n\n\nend")
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}


class _AdapterHolder(nn.Module):
    """Just the parts of OmniFusion that `load_adapter_state` checks, without an LLM."""

    def __init__(self, cfg: OmniFusionConfig):
        super().__init__()
        self.adapter = Adapter(cfg)
        self.special = nn.ParameterDict({n: nn.Parameter(torch.zeros(cfg.adapter_out)) for n in SPECIALS})


def _vision_name(cfg: OmniFusionConfig, preset: OmniFusionConfig) -> str:
    """Keep open_clip's model name when the geometry is the preset's; otherwise a name open_clip does not know,
    so VisionEncoder builds the tower from our fields alone."""
    fields = ("vision_image_size", "vision_patch_size", "vision_width", "vision_layers", "vision_heads",
              "vision_mlp_ratio", "vision_quick_gelu")
    if all(getattr(cfg, f) == getattr(preset, f) for f in fields):
        return preset.vision_model
    return (f"converted-vit-{cfg.vision_image_size}-p{cfg.vision_patch_size}-w{cfg.vision_width}"
            f"-l{cfg.vision_layers}{'-quickgelu' if cfg.vision_quick_gelu else ''}")


def infer_config(clip: ClipWeights, adapter: ReleasedAdapter, llm_cfg, release: str = "omnifusion-1.1"
                 ) -> OmniFusionConfig:
    """Preset omnifusion-1.1, with every size taken from what the files say; cross-component mismatches refused.
    1.0 is taken to share 1.1's prompt and settings (its sizes come from its own files), so only the preset's
    name (`release`) tells which weights these are."""
    hidden = llm_cfg.hidden_size
    grid = clip.image_size // clip.patch_size
    problems = []
    if adapter.width != clip.width:
        problems.append(f"projection.pt transformer_layer.self_attn.in_proj_weight reads {adapter.width}-wide "
                        f"features, the CLIP tower gives {clip.width}")
    if adapter.out != hidden:
        problems.append(f"projection.pt linear.weight writes {adapter.out}-wide vectors, the LLM is {hidden} wide")
    if adapter.n_embeddings not in (None, grid * grid):
        problems.append(f"projection.pt n_embeddings={adapter.n_embeddings}, CLIP gives {grid * grid} patches")
    if adapter.embedding_dim not in (None, hidden):
        problems.append(f"projection.pt embedding_dim={adapter.embedding_dim}, the LLM is {hidden} wide")
    if problems:
        raise ValueError("the release does not fit together: " + "; ".join(problems))
    preset = preset_config("omnifusion-1.1")
    windows = [preset.llm_max_context, llm_cfg.max_position_embeddings, getattr(llm_cfg, "sliding_window", None)]
    cfg = preset.replace(
        vision_image_size=clip.image_size, vision_patch_size=clip.patch_size, vision_width=clip.width,
        vision_layers=clip.layers, vision_heads=clip.heads, vision_mlp_ratio=clip.mlp_ratio,
        vision_quick_gelu=clip.quick_gelu,
        adapter_heads=adapter.heads, adapter_ff=adapter.ff, adapter_dropout=adapter.dropout,
        llm_hidden_size=hidden, llm_layers=llm_cfg.num_hidden_layers, llm_heads=llm_cfg.num_attention_heads,
        llm_kv_heads=getattr(llm_cfg, "num_key_value_heads", None) or llm_cfg.num_attention_heads,
        llm_intermediate_size=llm_cfg.intermediate_size, llm_vocab_size=llm_cfg.vocab_size,
        llm_max_context=min(w for w in windows if w))
    cfg = cfg.replace(vision_model=_vision_name(cfg, preset))
    return cfg.replace(preset=release if cfg.to_dict() == preset.to_dict() else "converted")


def _check_tokenizer(folder: Path, vocab_size: int) -> None:
    """The release tokenized with sentencepiece (slow LlamaTokenizer); whatever class transformers picks today
    must give the same ids, or the model would read text it was never trained on."""
    tok = load_tokenizer(folder)
    if len(tok) > vocab_size:
        raise ValueError(f"the tokenizer has {len(tok)} tokens, the LLM's embeddings only {vocab_size}")
    if not (folder / "tokenizer.model").is_file():
        return
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    for text in TOKENIZER_PROBES:
        ours, theirs = encode_segment(tok, text), sp.encode(text)
        if ours != theirs:
            raise ValueError(f"{type(tok).__name__} from {folder} encodes {text!r} as {ours}, sentencepiece (as "
                             f"in the release) as {theirs}")


def convert(src: str | Path, dst: str | Path, clip: str | Path | None, dtype: str = "bf16",
            echo=print) -> OmniFusionConfig:
    src, dst = Path(src), Path(dst)
    layout = find_layout(src)
    if clip is None:
        raise FileNotFoundError(MISSING_CLIP)
    if dst.exists() and any(dst.iterdir()):
        raise FileExistsError(f"{dst} exists and is not empty; choose a new folder")
    torch_dtype = DTYPES[dtype]
    projection, llm = src / layout.projection, src / layout.llm
    echo(f"layout: {layout.name}")
    if layout is V1_0 and (src / "OmniMistral-v1_1").is_dir():
        echo(f"note: {src} also holds OmniMistral-v1_1/; pass that folder to convert OmniFusion-1.1 instead")

    echo(PICKLE_WARNING.format(path=projection))
    released = load_projection(projection)
    special = load_special(src / layout.special)
    llm_cfg = AutoConfig.from_pretrained(str(llm))
    weights = load_clip(clip, fallback=_preset_geometry())
    echo(f"CLIP: {weights.source} weights, {weights.layers} blocks of width {weights.width}, "
         f"{weights.image_size}px, quick_gelu={weights.quick_gelu}")
    cfg = infer_config(weights, released, llm_cfg, layout.name)

    # Shape checks against the modules this config builds; on the meta device, so no memory for real sizes.
    with torch.device("meta"):
        holder = _AdapterHolder(cfg)
        tower = VisionEncoder(cfg).tower
    kept = len(tower.transformer.resblocks)
    vision = {k: v for k, v in weights.state.items() if not _unused_by_tower(k, kept)}
    with warnings.catch_warnings():  # copying into meta tensors is a no-op, which is all we want here
        warnings.filterwarnings("ignore", message=".*non-meta parameter.*meta parameter")
        load_adapter_state(holder, {**released.state, **special}, str(projection))
        load_state_checked(tower, vision, f"CLIP weights from {clip}")

    partial = dst.with_name(f".{dst.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        cfg.save(partial / CONFIG_FILE)
        adapter = {**released.state, **special}
        save_file({k: v.to(torch_dtype).contiguous() for k, v in adapter.items()}, str(partial / ADAPTER_FILE),
                  metadata={"format": "pt"})
        save_file({k: v.to(torch_dtype).contiguous() for k, v in vision.items()}, str(partial / VISION_FILE),
                  metadata={"format": "pt"})
        write_llm(llm, src / layout.tokenizer, partial / cfg.llm_subfolder, echo)
        check_embeddings(partial / cfg.llm_subfolder, llm_cfg)
        _check_tokenizer(partial / cfg.llm_subfolder, llm_cfg.vocab_size)
        if dst.exists():
            dst.rmdir()  # empty, checked above
        partial.rename(dst)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    echo(f"wrote {dst} (preset {cfg.preset}, adapter and vision in {dtype})")
    return cfg


def _preset_geometry() -> dict:
    p = preset_config("omnifusion-1.1")
    return {"image_size": p.vision_image_size, "patch_size": p.vision_patch_size, "width": p.vision_width,
            "layers": p.vision_layers, "heads": p.vision_heads, "mlp_ratio": p.vision_mlp_ratio,
            "quick_gelu": p.vision_quick_gelu}


def _unused_by_tower(key: str, kept_blocks: int) -> bool:
    """Blocks after the feature layer, ln_post and proj: in CLIP, never read by OmniFusion."""
    if key.startswith("transformer.resblocks."):
        return int(key.split(".")[2]) >= kept_blocks
    return key.split(".")[0] in ("ln_post", "proj")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="the released OmniMistral-v1_1 folder (or the repository root for 1.0)")
    parser.add_argument("dst", help="new folder for the converted checkpoint")
    parser.add_argument("--clip", help=f"local copy of {CLIP_REPO} (transformers or open_clip layout)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bf16",
                        help="adapter and vision weights (bf16 as released; fp32 keeps CLIP bit-exact). "
                             "The LLM shards are linked as they are.")
    args = parser.parse_args(argv)
    try:
        convert(args.src, args.dst, args.clip, args.dtype, echo=lambda m: print(m, file=sys.stderr))
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
