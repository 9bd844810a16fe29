"""Writes a folder in the released OmniMistral-v1_1 layout at tiny sizes, plus a transformers CLIP folder.

Everything is made here, from random weights and a sentencepiece model trained on a few sentences: the real
release is 15 GB and not downloadable in tests. The adapter is pickled as the release did it (a whole module
of class `models.VisualToGPTMapping`, bf16, training mode), and `models` is gone again afterwards, so only a
loader that does not import it can read the file.
"""

from __future__ import annotations

import importlib
import io
import json
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
    folder: Path  # OmniMistral-v1_1
    clip: Path  # transformers CLIPVisionModel folder
    projection: torch.nn.Module  # the pickled module, still usable here
    special: dict[str, torch.Tensor]
    llm: MistralForCausalLM  # as saved (bf16)
    clip_model: CLIPVisionModel
    sp_model: bytes


def save_projection(path: Path, workdir: Path, mutate=None, width: int = WIDTH) -> torch.nn.Module:
    """Pickle a `models.VisualToGPTMapping` (bf16, train mode) to `path`; `models` is unimportable afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "models.py").write_text(MODELS_PY)
    sys.path.insert(0, str(workdir))
    try:
        models = importlib.import_module("models")
        torch.manual_seed(1)
        module = models.VisualToGPTMapping(width, HIDDEN, PATCHES, ADAPTER_HEADS, dim_feedforward=ADAPTER_FF)
        with torch.no_grad():  # LayerNorms start at 1/0; move them so a swapped norm would show
            for p in module.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        if mutate:
            mutate(module)
        module = module.to(torch.bfloat16).train()
        torch.save(module, path)
    finally:
        sys.path.remove(str(workdir))
        sys.modules.pop("models", None)
        (workdir / "models.py").unlink()
    return module


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


def write_release(root: Path) -> Release:
    folder = root / "OmniMistral-v1_1"
    folder.mkdir(parents=True)
    projection = save_projection(folder / "projection.pt", root / "training-code")

    torch.manual_seed(3)
    special = {name: torch.randn(HIDDEN).to(torch.bfloat16).requires_grad_() for name in ("USER", "BOT", "SOI", "EOI")}
    torch.save(special, folder / "special_embeddings.pt")

    torch.manual_seed(4)
    llm = MistralForCausalLM(MistralConfig(
        vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=1024, sliding_window=None, tie_word_embeddings=False,
        bos_token_id=1, eos_token_id=2)).to(torch.bfloat16)
    llm.save_pretrained(folder / "tuned-model", max_shard_size="40KB")  # several shards, like the release

    tokenizer = folder / "tokenizer"
    tokenizer.mkdir()
    sp_model = train_sentencepiece()
    (tokenizer / "tokenizer.model").write_bytes(sp_model)
    (tokenizer / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    (tokenizer / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP))

    clip_model = save_clip(root / "clip-vit")
    return Release(folder, root / "clip-vit", projection, special, llm, clip_model, sp_model)
