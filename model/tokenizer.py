"""Tokenizers: the checkpoint's own for real models, a small BPE trained in memory for in-memory presets, and an
incremental decoder that turns a growing list of token ids into text deltas."""

from __future__ import annotations

import json
from pathlib import Path

import sentencepiece
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast
from transformers.tokenization_utils_sentencepiece import SentencePieceBackend

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


def train_bpe_tokenizer(lines, vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on `lines`: deterministic, no downloads, and it still encodes every byte of any
    text (a word it never saw just takes more tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)


def build_tiny_tokenizer(vocab_size: int) -> PreTrainedTokenizerFast:
    """The in-memory presets' tokenizer: BPE over a built-in corpus."""
    return train_bpe_tokenizer(_TINY_CORPUS.splitlines() * 4, vocab_size)


class SentencePieceTokenizer(SentencePieceBackend):
    """SentencePiece itself decides every id, as in the release (its code loads the tokenizer with
    `use_fast=False`). Transformers 5 has no slow LlamaTokenizer any more, and the fast one it converts from the
    same tokenizer.model splits whitespace runs differently (`"a  b"`: [264, 259, 28726] instead of SentencePiece's
    [264, 28705, 287]); a model fine-tuned on the slow ids would then read text it was never trained on."""

    def _tokenize(self, text: str, **kwargs) -> list[str]:
        return self.sp_model.encode(text, out_type=str)

    def convert_tokens_to_string(self, tokens: list[str]) -> str:
        # SentencePiece's own decoder: byte-fallback pieces become characters, and only the dummy-prefix space of
        # the first piece is dropped (the base class strips both ends and leaves "<0xE2>" pieces as they are).
        return self.sp_model.decode_pieces(tokens)


def load_tokenizer(folder: str | Path) -> PreTrainedTokenizerBase:
    """The class follows from the files alone, never from stray ones beside them (AutoTokenizer picks another
    class when a config.json lies in the folder): a SentencePiece `tokenizer.model` -> SentencePieceTokenizer,
    even if a tokenizer.json is there too; otherwise a `tokenizer.json` (our own BPE tokenizers) ->
    PreTrainedTokenizerFast."""
    folder = Path(folder)
    if (folder / "tokenizer.model").is_file():
        tokenizer = _load_sentencepiece(folder)
    elif (folder / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
    else:
        raise FileNotFoundError(f"{folder} has neither tokenizer.model (SentencePiece) nor tokenizer.json")
    if tokenizer.pad_token_id is None:  # Mistral's tokenizer has none; padding is masked out anyway
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def _load_sentencepiece(folder: Path) -> SentencePieceTokenizer:
    config_file = folder / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    sp = sentencepiece.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    # Added tokens would need ids past SentencePiece's vocabulary, which it cannot produce; the release has none.
    extra = [t.get("content") for i, t in config.get("added_tokens_decoder", {}).items()
             if int(i) >= sp.get_piece_size()]
    if extra or (folder / "added_tokens.json").is_file():
        raise ValueError(f"{folder}: tokens added beyond the SentencePiece vocabulary ({extra or 'added_tokens.json'}) "
                         f"are not supported")
    # Special tokens come from the model itself, so a config cannot move them.
    specials = {name: sp.id_to_piece(i) for name, i in (("unk_token", sp.unk_id()), ("bos_token", sp.bos_id()),
                                                        ("eos_token", sp.eos_id()), ("pad_token", sp.pad_id()))
                if i >= 0}
    bos, eos = config.get("add_bos_token", True), config.get("add_eos_token", False)  # LlamaTokenizer's defaults
    pattern = {(True, False): "bos", (True, True): "bos_eos", (False, True): "eos"}.get((bos, eos), "none")
    # legacy=True: the base class would otherwise edit the model (drop the dummy prefix) before we use it.
    return SentencePieceTokenizer(vocab_file=str(folder / "tokenizer.model"), legacy=True,
                                  special_tokens_pattern=pattern, name_or_path=str(folder), **specials)


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
