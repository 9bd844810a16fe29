"""load_tokenizer gives SentencePiece's ids on every text, with the release's real tokenizer.model, whatever
files lie beside it; our own fast tokenizers keep loading as they are."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import sentencepiece as spm
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from model.tokenizer import (
    IncrementalDecoder,
    SentencePieceTokenizer,
    build_tiny_tokenizer,
    encode_segment,
    load_tokenizer,
)
from tests.released_layout import SPECIAL_TOKENS_MAP, TOKENIZER_CONFIG

REAL = Path(__file__).parent / "fixtures" / "omnifusion-1.1"

# Text pieces users type, weighted towards what a converted fast tokenizer gets wrong: runs of spaces, tabs,
# indentation, line breaks, a space before a word at the start.
_PIECES = (["hello", "world", "a", "b", "x", "The", "photo", "cat", "def", "return", "Привет", "мир", "кошка",
            "Ёлка", "на", "фото", "😀", "👍🏽", "👨‍👩‍👧", "🇷🇺", "é", "naïve", "日本", "１２", "42", "3.14", ":", ",", ".",
            "«", "»", "—", "-", "(", ")", "</s>", "<s>", "<unk>", "\u00a0", "\u200b", "\x00"]
           + [" "] * 12 + ["  ", "   ", "    ", "\t", "\t\t", "\n", "\n    ", "\n\t", "\r\n", "\n\n"] * 3)


def fuzz_strings(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 24))) for _ in range(n)]


def release_tokenizer_folder(path: Path) -> Path:
    """The released OmniMistral-v1_1/tokenizer/: the real tokenizer.model and Mistral's two JSON files."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(REAL / "tokenizer.model", path / "tokenizer.model")
    (path / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    (path / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return release_tokenizer_folder(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def sp():
    return spm.SentencePieceProcessor(model_file=str(REAL / "tokenizer.model"))


def _mismatches(tokenizer, sp, texts) -> list[str]:
    return [t for t in texts if encode_segment(tokenizer, t) != sp.encode(t)]


def test_fuzzed_strings_get_sentencepiece_ids_and_text_back(folder, sp):
    tokenizer = load_tokenizer(folder)
    assert isinstance(tokenizer, SentencePieceTokenizer) and len(tokenizer) == 32000
    texts = fuzz_strings(2000)
    assert _mismatches(tokenizer, sp, texts) == []
    for text in texts:
        ids = sp.encode(text)
        assert tokenizer.decode(ids, skip_special_tokens=True) == sp.decode(ids), text
    # The examples from the report, as SentencePiece encodes them.
    assert encode_segment(tokenizer, "a  b") == [264, 28705, 287]
    assert encode_segment(tokenizer, " leading") == sp.encode(" leading") == [28705, 5374]


def test_the_fuzz_catches_the_converted_fast_tokenizer(folder, sp):
    """What AutoTokenizer makes of the same folder in transformers 5: a fast tokenizer converted from
    tokenizer.model. It must fail the same fuzz, or the test above would prove nothing. (Should a later
    transformers convert it right, this fails: delete it then; the fuzz above still stands.)"""
    converted = AutoTokenizer.from_pretrained(str(folder))
    assert not isinstance(converted, SentencePieceTokenizer)
    wrong = _mismatches(converted, sp, fuzz_strings(2000))
    assert len(wrong) > 200, len(wrong)
    assert encode_segment(converted, "a  b") != sp.encode("a  b")


def test_stray_files_beside_it_change_nothing(folder, sp, tmp_path):
    """A config.json (AutoTokenizer then picks another class) and a converted tokenizer.json with the wrong
    merge order, next to tokenizer.model: the ids stay SentencePiece's."""
    crowded = release_tokenizer_folder(tmp_path / "crowded")
    AutoTokenizer.from_pretrained(str(folder)).save_pretrained(tmp_path / "converted")
    shutil.copy(tmp_path / "converted" / "tokenizer.json", crowded / "tokenizer.json")
    (crowded / "config.json").write_text(json.dumps({"model_type": "mistral", "vocab_size": 32000}))
    tokenizer = load_tokenizer(crowded)
    assert isinstance(tokenizer, SentencePieceTokenizer)
    assert _mismatches(tokenizer, sp, fuzz_strings(300, seed=1)) == []


def test_sentencepiece_tokenizer_behaves_like_the_release_and_saves(folder, sp, tmp_path):
    tokenizer = load_tokenizer(folder)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (1, 2, 0)
    assert tokenizer.pad_token_id == 0  # Mistral has no pad token; padding is masked out
    assert tokenizer.encode("Hello") == [1, *sp.encode("Hello")]  # add_bos_token, as LlamaTokenizer
    assert tokenizer.encode("</s>", add_special_tokens=False) == [2]
    assert encode_segment(tokenizer, "</s>") == sp.encode("</s>")  # typed by a user: characters, not EOS
    tokenizer.save_pretrained(tmp_path / "saved")
    again = load_tokenizer(tmp_path / "saved")
    texts = fuzz_strings(200, seed=2)
    assert [encode_segment(again, t) for t in texts] == [sp.encode(t) for t in texts]
    assert again.encode("Hello") == tokenizer.encode("Hello")


def test_tokens_added_beyond_the_vocabulary_are_refused(tmp_path):
    crowded = release_tokenizer_folder(tmp_path / "added")
    config = {**TOKENIZER_CONFIG, "added_tokens_decoder": {"32000": {"content": "<image>", "special": True}}}
    (crowded / "tokenizer_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="<image>"):
        load_tokenizer(crowded)


def test_streaming_decoder_with_sentencepiece(folder, sp):
    tokenizer = load_tokenizer(folder)
    text = "Привет,  мир! 😀👍🏽 Кот\tсидит\n    на 🇷🇺 диване."
    ids = sp.encode(text)
    decoder = IncrementalDecoder(tokenizer)
    deltas = [decoder.push(i) for i in ids] + [decoder.flush()]
    assert "".join(deltas) == sp.decode(ids) == text
    assert not any("\ufffd" in d for d in deltas)


def test_our_own_fast_tokenizer_still_loads_as_saved(tmp_path):
    tiny = build_tiny_tokenizer(500)
    tiny.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "mistral"}))  # as in a checkpoint's llm/
    loaded = load_tokenizer(tmp_path)
    assert isinstance(loaded, PreTrainedTokenizerFast) and not isinstance(loaded, SentencePieceTokenizer)
    assert len(loaded) == len(tiny) and loaded.pad_token_id == tiny.pad_token_id
    texts = fuzz_strings(300, seed=3)
    assert [encode_segment(loaded, t) for t in texts] == [encode_segment(tiny, t) for t in texts]


def test_a_folder_without_a_tokenizer_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither tokenizer.model"):
        load_tokenizer(tmp_path)
