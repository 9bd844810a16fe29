"""Writes a folder in a released layout at tiny sizes (OmniMistral-v1_1, or the OmniFusion-1.0 repository root),
plus a transformers CLIP folder.

Everything is made here, from random weights and a sentencepiece model trained on a few sentences: the real
release is 15 GB and not downloadable in tests. The adapter is pickled as the release did it (a whole module
of class `models.VisualToGPTMapping`, bf16, training mode), and `models` is gone again afterwards, so only a
loader that does not import it can read the file.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import sentencepiece as spm
import torch
from transformers import CLIPVisionConfig, CLIPVisionModel, MistralConfig, MistralForCausalLM

# The release's training code (AIRI-Institute/OmniFusion, models.py), plus dim_feedforward so that the tiny
# sizes can check the converter reads it from the weights instead of assuming the default 2048.
MODELS_PY = '''
import torch.nn as nn


class VisualToGPTMapping(nn.Module):
    def __init__(self, visual_emb_dim, gpt_emb_dim, num_gpt_embs, num_heads, dim_feedforward=2048):
        super(VisualToGPTMapping, self).__init__()
        self.transformer_layer = nn.TransformerEncoderLayer(d_model=visual_emb_dim, nhead=num_heads,
            dim_feedforward=dim_feedforward, batch_first=True, norm_first=False)
        self.linear = nn.Linear(visual_emb_dim, gpt_emb_dim)
        self.n_embeddings = num_gpt_embs
        self.embedding_dim = gpt_emb_dim

    def forward(self, visual_embs):
        out = self.transformer_layer(visual_embs)
        out = self.linear(out).view(-1, self.n_embeddings, self.embedding_dim)
        return out


class MixedEncodersAdapter(nn.Module):
    """Stands in for the encoders-mix release's adapter, whose code is not public: any other class will do."""

    def __init__(self, width, out):
        super(MixedEncodersAdapter, self).__init__()
        self.clip_proj = nn.Linear(width, out)
        self.dino_proj = nn.Linear(width, out)
'''

SENTENCES = ["This is a dialog with AI assistant.", "What is on this photo?", "What colour is the car?",
             "A cat is sitting on a sofa near the window.", "Что изображено на картинке?",
             "Это диалог с ИИ-ассистентом.", "In 2024: 3.14 + x = 42", "- item one\n- item two"]

# Mistral's tokenizer_config.json, as the release ships it.
TOKENIZER_CONFIG = {"add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
                    "unk_token": "<unk>", "pad_token": None, "legacy": True, "clean_up_tokenization_spaces": False,
                    "model_max_length": 1000000000000000019884624838656, "tokenizer_class": "LlamaTokenizer"}
SPECIAL_TOKENS_MAP = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}

WIDTH, PATCH, IMAGE, CLIP_LAYERS, CLIP_HEADS = 64, 8, 48, 3, 4
PATCHES = (IMAGE // PATCH) ** 2
HIDDEN, ADAPTER_HEADS, ADAPTER_FF, VOCAB = 64, 4, 128, 400


@dataclass
class Release:
    folder: Path  # OmniMistral-v1_1, or the 1.0 repository root
    clip: Path  # transformers CLIPVisionModel folder
    projection: torch.nn.Module  # the pickled module, still usable here
    special: dict[str, torch.Tensor]
    llm: MistralForCausalLM  # as saved (bf16)
    clip_model: CLIPVisionModel
    sp_model: bytes


class RunsCode:
    """Pickles to a call of os.system: touching `marker` proves a loader ran it."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@contextlib.contextmanager
def training_code(workdir: Path):
    """The release's `models` module, importable inside the block only: what a pickle of it then needs."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "models.py").write_text(MODELS_PY)
    sys.path.insert(0, str(workdir))
    try:
        yield importlib.import_module("models")
    finally:
        sys.path.remove(str(workdir))
        sys.modules.pop("models", None)
        (workdir / "models.py").unlink()


def save_projection(path: Path, workdir: Path, mutate=None, width: int = WIDTH) -> torch.nn.Module:
    """Pickle a `models.VisualToGPTMapping` (bf16, train mode) to `path`; `models` is unimportable afterwards."""
    with training_code(workdir) as models:
        torch.manual_seed(1)
        module = models.VisualToGPTMapping(width, HIDDEN, PATCHES, ADAPTER_HEADS, dim_feedforward=ADAPTER_FF)
        with torch.no_grad():  # LayerNorms start at 1/0; move them so a swapped norm would show
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        if mutate:
            mutate(module)
        module = module.to(torch.bfloat16).train()
        torch.save(module, path)
    return module


def save_mixed_adapter(path: Path, workdir: Path) -> None:
    with training_code(workdir) as models:
        torch.save(models.MixedEncodersAdapter(WIDTH, HIDDEN), path)


def save_pickled_shards(llm: MistralForCausalLM, folder: Path, shards: int = 3) -> None:
    """What transformers < 4.35 wrote by default: pytorch_model-0000i-of-0000n.bin state dicts + their index."""
    folder.mkdir(parents=True)
    llm.config.save_pretrained(folder)
    llm.generation_config.save_pretrained(folder)
    keys = list(llm.state_dict())
    weight_map = {}
    for i in range(shards):
        name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin"
        part = {k: v for k, v in llm.state_dict().items() if k in keys[i::shards]}
        torch.save(part, folder / name)
        weight_map.update(dict.fromkeys(part, name))
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))


def train_sentencepiece() -> bytes:
    """Byte-fallback BPE with Llama/Mistral's normalisation (none) and dummy prefix."""
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES * 20), model_writer=buf, vocab_size=VOCAB, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=True,
        split_digits=True, num_threads=1, minloglevel=2)
    return buf.getvalue()


def save_clip(folder: Path, width: int = WIDTH) -> CLIPVisionModel:
    config = CLIPVisionConfig(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=CLIP_LAYERS,
                              num_attention_heads=CLIP_HEADS, image_size=IMAGE, patch_size=PATCH,
                              hidden_act="quick_gelu")
    torch.manual_seed(2)
    model = CLIPVisionModel(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(folder)
    return model


def write_release(root: Path, version: str = "1.1") -> Release:
    """1.1: OmniMistral-v1_1/ with safetensors shards. 1.0: the repository root, `projection` without a suffix,
    pickled `.bin` shards in OmniMistral-model/, the tokenizer in OmniMistral-tokenizer/."""
    names = {"1.1": ("OmniMistral-v1_1", "projection.pt", "tuned-model", "tokenizer"),
             "1.0": ("OmniFusion", "projection", "OmniMistral-model", "OmniMistral-tokenizer")}[version]
    folder = root / names[0]
    folder.mkdir(parents=True)
    projection = save_projection(folder / names[1], root / "training-code")

    torch.manual_seed(3)
    special = {name: torch.randn(HIDDEN).to(torch.bfloat16).requires_grad_() for name in ("USER", "BOT", "SOI", "EOI")}
    torch.save(special, folder / "special_embeddings.pt")

    torch.manual_seed(4)
    llm = MistralForCausalLM(MistralConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, sliding_window=None, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2)).to(torch.bfloat16)
    if version == "1.1":
        llm.save_pretrained(folder / names[2], max_shard_size="40KB")  # several shards, like the release
    else:
        save_pickled_shards(llm, folder / names[2])

    tokenizer = folder / names[3]
    tokenizer.mkdir()
    sp_model = train_sentencepiece()
    (tokenizer / "tokenizer.model").write_bytes(sp_model)
    (tokenizer / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    (tokenizer / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP))

    clip_model = save_clip(root / "clip-vit")
    return Release(folder, root / "clip-vit", projection, special, llm, clip_model, sp_model)
