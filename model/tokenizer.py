"""Tokenizers: the checkpoint's own for real models, a small BPE trained in memory for in-memory presets, and an
incremental decoder that turns a growing list of token ids into text deltas."""

from __future__ import annotations

from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS = {"unk_token": "<unk>", "bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>"}

# A few lines in the two interface languages: enough merges that tiny-model output looks like word pieces.
_TINY_CORPUS = """\
This is a dialog with AI assistant. What is on this photo? A cat is sitting on a sofa near the window.
What colour is it? It is grey with white paws. Describe the image in detail, please.
The picture shows a street with old houses, a red car, two people and a dog. The sky is blue and clear.
How many apples are on the table? There are three green apples and one red apple on a wooden table.
Can you read the text on the sign? The sign says "Open from 9 to 18". Thank you! You are welcome.
Это диалог с ИИ-ассистентом. Что на этой фотографии? Кошка сидит на диване у окна.
Какого она цвета? Серая, с белыми лапами. Опиши картинку подробно, пожалуйста.
На снимке улица со старыми домами, красная машина, два человека и собака. Небо голубое и ясное.
"""


def build_tiny_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on a built-in corpus: deterministic, no downloads, covers every byte."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_TINY_CORPUS.splitlines() * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token_id is None:  # Mistral's tokenizer has none; padding is masked out anyway
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def encode_segment(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """The release encodes every text piece separately, with no BOS/EOS. A user who types "</s>" gets the
    characters, not the EOS token: special-token strings in text are split like any other text."""
    return tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True) if text else []


class IncrementalDecoder:
    """Token ids in, text deltas out.

    Decoding only the newest token is wrong for byte-fallback and byte-level vocabularies (one character may
    span several tokens) and for SentencePiece (a lone piece loses its leading space), so we decode a short
    window twice and emit the difference, holding back a trailing incomplete character (U+FFFD).
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.text = ""
        self._prefix = 0  # window start
        self._read = 0  # ids up to here are already in self.text

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> str:
        self.ids.append(token_id)
        before = self._decode(self.ids[self._prefix:self._read])
        after = self._decode(self.ids[self._prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            delta = after[len(before):]
            self._prefix, self._read = self._read, len(self.ids)
            self.text += delta
            return delta
        return ""

    def flush(self) -> str:
        """At the end, whatever is held back (an incomplete character stays as U+FFFD)."""
        before = self._decode(self.ids[self._prefix:self._read])
        after = self._decode(self.ids[self._prefix:])
        delta = after[len(before):] if after.startswith(before) else ""
        self._prefix = self._read = len(self.ids)
        self.text += delta
        return delta
