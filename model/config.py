"""One config for the whole model; presets are named configs, not code paths.

Fields are prefixed by the component they shape (`vision_*`, `adapter_*`, `llm_*`, `prompt_*`); derived values
are computed in `__post_init__` so no caller ever recomputes them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

RELEASED_PROMPT = "This is a dialog with AI assistant.\n"

# The released model never learned to emit EOS (training did not append it), so a chat needs its own stop rule.
# These strings mark the model starting a new turn on its own. A model trained by training/ learns EOS as well.
DEFAULT_STOP = ("</s>", "\nUSER", "\nUser:", "\nuser:", "\nBOT", "\nBot:", "\nAssistant:", "\n\n\n")


@dataclass
class OmniFusionConfig:
    preset: str = "custom"

    # Vision encoder: an open_clip vision tower; features are the second-to-last block's outputs without CLS.
    vision_model: str = "ViT-L-14-336-quickgelu"
    vision_image_size: int = 336
    vision_patch_size: int = 14
    vision_width: int = 1024
    vision_layers: int = 24
    vision_heads: int = 16
    vision_mlp_ratio: float = 4.0
    vision_quick_gelu: bool = True  # the OpenAI CLIP weights were trained with QuickGELU
    vision_feature_layer: int = -2  # hidden_states[-2] in HF terms: the output of the second-to-last block
    vision_max_aspect: float = 2.0  # wider images are padded first so centre-crop keeps all of them

    # Adapter: one post-norm TransformerEncoderLayer, then a Linear to the LLM width (the released structure).
    adapter_heads: int = 4
    adapter_ff: int = 2048
    adapter_dropout: float = 0.1

    # LLM: a transformers causal LM in the checkpoint's `llm_subfolder`; the sizes below only build the
    # in-memory random LLM of small presets (`llm_build_in_memory`), a real checkpoint carries its own.
    llm_subfolder: str = "llm"
    llm_build_in_memory: bool = False
    llm_hidden_size: int = 4096
    llm_layers: int = 32
    llm_heads: int = 32
    llm_kv_heads: int = 8
    llm_intermediate_size: int = 14336
    llm_vocab_size: int = 32000
    llm_max_context: int = 4096  # Mistral's sliding window; a DynamicCache keeps all tokens, so stay inside it
    llm_rope_theta: float = 10000.0  # RoPE base of an in-memory LLM (Mistral-7B v0.1: 1e4; v0.2 and later: 1e6)

    # Prompt template (the released one by default).
    prompt_text: str = RELEASED_PROMPT
    prompt_stop: tuple[str, ...] = DEFAULT_STOP
    prompt_append_eos: bool = False  # training: end each answer with EOS so the model learns to stop

    seed: int = 0  # random init of in-memory presets

    # Derived.
    vision_num_patches: int = field(init=False)
    adapter_out: int = field(init=False)

    def __post_init__(self):
        self.prompt_stop = tuple(self.prompt_stop)
        if self.vision_image_size % self.vision_patch_size:
            raise ValueError("vision_image_size must be a multiple of vision_patch_size")
        if self.vision_width % self.adapter_heads:
            raise ValueError("vision_width must be divisible by adapter_heads")
        self.vision_num_patches = (self.vision_image_size // self.vision_patch_size) ** 2
        self.adapter_out = self.llm_hidden_size

    def replace(self, **changes) -> OmniFusionConfig:
        return dataclasses.replace(self, **changes)

    # --- JSON (config.json of a checkpoint) ---------------------------------------------------------------

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def from_dict(cls, data: dict) -> OmniFusionConfig:
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - known - {"vision_num_patches", "adapter_out"})
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: str | Path) -> OmniFusionConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))


PRESETS: dict[str, OmniFusionConfig] = {
    # Random weights built in memory; CPU, seconds to load. Used by tests and `make demo`.
    "tiny": OmniFusionConfig(
        preset="tiny", vision_model="omnifusion-tiny-vit", vision_image_size=48, vision_patch_size=8,
        vision_width=64, vision_layers=3, vision_heads=4, vision_quick_gelu=False,
        adapter_heads=4, adapter_ff=128, llm_build_in_memory=True, llm_hidden_size=64, llm_layers=2,
        llm_heads=4, llm_kv_heads=2, llm_intermediate_size=128, llm_vocab_size=512, llm_max_context=2048),
    # Big enough (~40M parameters) that arithmetic, not Python, dominates: for benchmarks on a CPU.
    "bench": OmniFusionConfig(
        preset="bench", vision_model="omnifusion-bench-vit", vision_image_size=112, vision_patch_size=14,
        vision_width=256, vision_layers=4, vision_heads=4, vision_quick_gelu=False,
        adapter_heads=4, adapter_ff=512, llm_build_in_memory=True, llm_hidden_size=512, llm_layers=8,
        llm_heads=8, llm_kv_heads=4, llm_intermediate_size=1536, llm_vocab_size=2048, llm_max_context=2048),
    # A small OmniFusion trained by this project's own recipe on its picture world (docs/demo-model.md): it knows
    # coloured shapes, in English and Russian. Weights ship with the code (model/checkpoints/demo/).
    "demo": OmniFusionConfig(
        preset="demo", vision_model="omnifusion-demo-vit", vision_image_size=96, vision_patch_size=16,
        vision_width=128, vision_layers=4, vision_heads=4, vision_quick_gelu=False,
        # Two LLM blocks, not four: each stage-2 step 1.5x faster, and three epochs in the time of two give 1.4-2.1
        # points more in all (two seeds; docs/demo-model.md, "The LLM's depth").
        adapter_heads=4, adapter_ff=256, llm_hidden_size=256, llm_layers=2, llm_heads=4, llm_kv_heads=2,
        llm_intermediate_size=640, llm_vocab_size=1024, llm_max_context=1024, prompt_append_eos=True,
        # Mistral v0.2's base. Meant to let a question word find its object among a picture's 36 tokens whatever
        # their distance; measured, no effect beyond what seeds differ by (docs/demo-model.md: four paired runs,
        # +1.4, +0.1, -0.3, 0.0 points against 1e4). The committed model is trained with it.
        llm_rope_theta=1e6),
    # The released OmniFusion-1.1 (Mistral-7B + CLIP ViT-L/14-336); weights from a local folder.
    "omnifusion-1.1": OmniFusionConfig(preset="omnifusion-1.1"),
}


def preset_config(name: str) -> OmniFusionConfig:
    try:
        return PRESETS[name].replace()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}") from None
