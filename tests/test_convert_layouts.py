"""The converter names the layout it is given: OmniFusion-1.0 (the repository root, pickled `.bin` shards) is
converted, OmniMistral-v1_1-encoders-mix is refused as what it is, anything else lists what is expected."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from model.omnifusion import OmniFusion
from model.release.convert import convert
from model.release.layouts import ENCODERS_MIX
from model.release.llm_folder import safetensors_from_bin
from model.release.pickles import load_projection
from tests.released_layout import PATCHES, RunsCode, save_mixed_adapter, write_release


def quiet(_message):
    pass


@pytest.fixture(scope="module")
def release_1_0(tmp_path_factory):
    release = write_release(tmp_path_factory.mktemp("release-1.0"), version="1.0")
    # The Hugging Face repository root also holds the 1.1 folder.
    (release.folder / "OmniMistral-v1_1").mkdir()
    return release


@pytest.fixture(scope="module")
def converted_1_0(release_1_0, tmp_path_factory):
    messages = []
    dst = tmp_path_factory.mktemp("converted-1.0") / "omnifusion-1.0"
    cfg = convert(release_1_0.folder, dst, release_1_0.clip, dtype="fp32", echo=messages.append)
    return dst, cfg, messages


def test_1_0_root_converts_to_safetensors_only(release_1_0, converted_1_0):
    dst, cfg, messages = converted_1_0
    assert "layout: omnifusion-1.0" in messages
    assert any("OmniMistral-v1_1/" in m and "pass that folder" in m for m in messages)
    assert any("pytorch_model-00001-of-00003.bin -> model-00001-of-00003.safetensors" in m for m in messages)
    llm_files = {p.name for p in (dst / "llm").iterdir()}
    assert not any(name.endswith(".bin") or ".bin." in name for name in llm_files), llm_files
    assert {"config.json", "model.safetensors.index.json", "tokenizer.model"} <= llm_files
    index = json.loads((dst / "llm" / "model.safetensors.index.json").read_text())
    stored = {}
    for shard in sorted(set(index["weight_map"].values())):
        stored.update(load_file(str(dst / "llm" / shard)))
    assert stored.keys() == release_1_0.llm.state_dict().keys() == index["weight_map"].keys()
    assert all(torch.equal(stored[k], v) for k, v in release_1_0.llm.state_dict().items())
    assert cfg.preset == "converted"  # tiny sizes; the real ones infer "omnifusion-1.0" (test_convert.py)


def test_converted_1_0_computes_what_its_parts_compute(release_1_0, converted_1_0):
    model = OmniFusion.from_pretrained(converted_1_0[0], device="cpu", dtype=torch.float32)
    feats = torch.randn(2, PATCHES, 64)
    ids = torch.randint(3, 400, (1, 12))
    with torch.no_grad():
        projection = release_1_0.projection.float().eval()
        torch.testing.assert_close(model.adapter(feats), projection(feats), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(model.llm(ids).logits, release_1_0.llm.float()(ids).logits, atol=1e-5, rtol=1e-5)


def test_encoders_mix_is_named_and_refused(release_1_0, tmp_path):
    mix = tmp_path / ENCODERS_MIX
    shutil.copytree(release_1_0.folder, mix, ignore=shutil.ignore_patterns("OmniMistral-v1_1"))
    with pytest.raises(ValueError, match="CLIP \\+ DINOv2") as info:
        convert(mix, tmp_path / "out", release_1_0.clip, echo=quiet)
    assert "tampered" not in str(info.value) and "Supported: OmniMistral-v1_1" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_renamed_encoders_mix_is_known_by_its_adapter_class(release_1_0, tmp_path):
    folder = tmp_path / "my-omnifusion"
    shutil.copytree(release_1_0.folder, folder)
    save_mixed_adapter(folder / "projection", tmp_path / "code")
    with pytest.raises(ValueError, match="models.MixedEncodersAdapter") as info:
        load_projection(folder / "projection")
    assert ENCODERS_MIX in str(info.value) and "tampered" not in str(info.value)
    with pytest.raises(ValueError, match=ENCODERS_MIX):
        convert(folder, tmp_path / "out", release_1_0.clip, echo=quiet)
    assert not (tmp_path / "out").exists()


def test_an_unknown_folder_lists_both_layouts(tmp_path):
    (tmp_path / "OmniMistral-v1_1").mkdir()
    (tmp_path / "projection.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError) as info:
        convert(tmp_path, tmp_path / "out", "clip", echo=quiet)
    text = str(info.value)
    assert "omnifusion-1.1 needs projection.pt, special_embeddings.pt, tuned-model/, tokenizer/" in text
    assert "(missing: special_embeddings.pt, tuned-model/, tokenizer/)" in text
    assert "omnifusion-1.0 needs projection, special_embeddings.pt, OmniMistral-model/, OmniMistral-tokenizer/" in text
    assert f"pass {tmp_path / 'OmniMistral-v1_1'}" in text


def test_a_bin_shard_that_would_run_code_is_refused_unexecuted(release_1_0, tmp_path):
    folder = tmp_path / "OmniFusion"
    shutil.copytree(release_1_0.folder, folder)
    marker = tmp_path / "pwned"
    shard = folder / "OmniMistral-model" / "pytorch_model-00002-of-00003.bin"
    torch.save({"model.norm.weight": torch.ones(64), "extra": RunsCode(marker)}, shard)
    with pytest.raises(ValueError, match="cannot read .*pytorch_model-00002-of-00003.bin as a state dict"):
        convert(folder, tmp_path / "out", release_1_0.clip, echo=quiet)
    assert not marker.exists() and not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.partial-*"))


def test_shared_tensors_are_written_separately(tmp_path):
    """safetensors refuses tensors that share memory (tied embeddings in old checkpoints)."""
    embed = torch.randn(10, 4)
    torch.save({"model.embed_tokens.weight": embed, "lm_head.weight": embed, "half": embed[:5]},
               tmp_path / "pytorch_model.bin")
    out = tmp_path / "out"
    out.mkdir()
    safetensors_from_bin([tmp_path / "pytorch_model.bin"], out, quiet)
    stored = load_file(str(out / "model.safetensors"))
    assert torch.equal(stored["lm_head.weight"], embed) and torch.equal(stored["half"], embed[:5])
    assert not (out / "model.safetensors.index.json").exists()  # one shard needs no index
