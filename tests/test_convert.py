"""`python -m model.convert` on a released-layout folder written by the test (tests/released_layout.py)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import sentencepiece as spm
import torch
from safetensors.torch import load_file

from model.adapter import Adapter
from model.config import RELEASED_PROMPT, preset_config
from model.dialog import SPECIALS, encode_dialog
from model.omnifusion import OmniFusion
from model.release.clip_weights import ClipWeights
from model.release.convert import MISSING_CLIP, _AdapterHolder, convert, infer_config, main
from model.release.pickles import ReleasedAdapter, load_projection, load_special
from model.serving.engine import SamplingParams, generate
from model.vision import VisionEncoder
from tests.released_layout import PATCHES, SENTENCES, RunsCode, save_clip, save_projection, write_release


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return write_release(tmp_path_factory.mktemp("release"))


@pytest.fixture(scope="module")
def converted(release, tmp_path_factory):
    messages = []
    dst = tmp_path_factory.mktemp("converted") / "omnifusion"
    convert(release.folder, dst, release.clip, dtype="fp32", echo=messages.append)
    return dst, messages


@pytest.fixture(scope="module")
def model(converted):
    return OmniFusion.from_pretrained(converted[0], device="cpu", dtype=torch.float32)


def _copy_release(release, tmp_path):
    copy = tmp_path / "OmniMistral-v1_1"
    shutil.copytree(release.folder, copy)
    return copy


# --- (a) the converted model computes what the released parts compute ---------------------------------------

def test_fixture_needs_the_missing_training_code(release):
    with pytest.raises(ModuleNotFoundError, match="models"):
        torch.load(release.folder / "projection.pt", weights_only=False)


def test_convert_warns_and_writes_our_format(release, converted):
    dst, messages = converted
    assert any("arbitrary code" in m and "projection.pt" in m for m in messages)
    assert sorted(p.name for p in dst.iterdir()) == ["adapter.safetensors", "config.json", "llm", "vision.safetensors"]
    llm_files = {p.name for p in (dst / "llm").iterdir()}
    assert {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "config.json"} <= llm_files
    shards = sorted(p.name for p in (release.folder / "tuned-model").glob("*.safetensors"))
    assert len(shards) > 1 and shards == sorted(p.name for p in (dst / "llm").glob("*.safetensors"))
    assert "models" not in sys.modules
    cfg = json.loads((dst / "config.json").read_text())
    assert (cfg["vision_width"], cfg["vision_layers"], cfg["vision_heads"], cfg["vision_quick_gelu"]) == (64, 3, 4, True)
    assert (cfg["adapter_heads"], cfg["adapter_ff"], cfg["llm_hidden_size"], cfg["llm_vocab_size"]) == (4, 128, 64, 400)
    assert cfg["vision_feature_layer"] == -2 and cfg["prompt_text"] == RELEASED_PROMPT


def test_vision_features_are_hf_clip_hidden_states_minus_two(release, model):
    pixels = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        theirs = release.clip_model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        ours = model.vision(pixels)
    assert ours.shape == (2, PATCHES, 64)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_adapter_special_vectors_and_llm_equal_the_release(release, model):
    projection = release.projection.float().eval()
    feats = torch.randn(2, PATCHES, 64)
    with torch.no_grad():
        torch.testing.assert_close(model.adapter(feats), projection(feats), atol=1e-5, rtol=1e-5)
        ids = torch.randint(3, 400, (1, 12))
        torch.testing.assert_close(model.llm(ids).logits, release.llm.float()(ids).logits, atol=1e-5, rtol=1e-5)
    for name in SPECIALS:
        assert torch.equal(model.special[name].detach(), release.special[name].detach().float())


def test_image_path_end_to_end_matches_release_pipeline(release, model):
    pixels = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        hidden = release.clip_model(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        expected = release.projection.float().eval()(hidden)
    torch.testing.assert_close(model.encode_pixels(pixels), expected, atol=1e-5, rtol=1e-5)


def test_tokenizer_encodes_segments_like_sentencepiece_without_bos(release, model):
    sp = spm.SentencePieceProcessor(model_proto=release.sp_model)
    for text in [RELEASED_PROMPT, *SENTENCES]:
        assert model.tokenizer.encode(text, add_special_tokens=False) == sp.encode(text)
    dialog = encode_dialog([{"role": "user", "content": [{"type": "image", "key": "a"},
                                                         {"type": "text", "text": "What is on this photo?"}]}],
                           model.tokenizer, model.config)
    texts = [s.ids for s in dialog.segments if s.kind == "text"]
    assert texts == [sp.encode(RELEASED_PROMPT), sp.encode("What is on this photo?")]
    assert all(model.tokenizer.bos_token_id not in ids for ids in texts)


def test_greedy_generation_runs(model):
    dialog = encode_dialog([{"role": "user", "content": [{"type": "image", "key": "a"},
                                                         {"type": "text", "text": "What colour is the car?"}]}],
                           model.tokenizer, model.config)
    image = model.encode_pixels(torch.randn(1, 3, 48, 48))
    embeds, _ = model.embed_dialog(dialog, image)
    [(text, finish, tokens)] = generate(model, [embeds], SamplingParams(max_new_tokens=5))
    assert 1 <= len(tokens) <= 5 and finish in ("length", "stop")


def test_bf16_default_and_open_clip_source(release, converted, tmp_path):
    """Default dtype is bf16; an open_clip checkpoint (`visual.*` + open_clip_config.json) gives the same tower."""
    fp32 = load_file(str(converted[0] / "vision.safetensors"))
    open_clip_dir = tmp_path / "open-clip"
    open_clip_dir.mkdir()
    state = {f"visual.{k}": v for k, v in fp32.items()}
    last = {k.replace("resblocks.0.", "resblocks.2."): v for k, v in state.items() if "resblocks.0." in k}
    state.update(last)  # the third block, which the tower drops
    state.update({"visual.ln_post.weight": torch.ones(64), "visual.ln_post.bias": torch.zeros(64),
                  "visual.proj": torch.zeros(64, 32), "logit_scale": torch.ones(())})
    torch.save(state, open_clip_dir / "open_clip_pytorch_model.bin")
    (open_clip_dir / "open_clip_config.json").write_text(json.dumps({"model_cfg": {
        "embed_dim": 32, "quick_gelu": True,
        "vision_cfg": {"image_size": 48, "layers": 3, "width": 64, "patch_size": 8, "head_width": 16}}}))
    dst = tmp_path / "bf16"
    convert(release.folder, dst, open_clip_dir, echo=lambda m: None)
    bf16 = load_file(str(dst / "vision.safetensors"))
    assert bf16.keys() == fp32.keys()
    for k, v in fp32.items():
        assert bf16[k].dtype == torch.bfloat16 and torch.equal(bf16[k], v.to(torch.bfloat16)), k
    assert json.loads((dst / "config.json").read_text()) == json.loads((converted[0] / "config.json").read_text())
    assert load_file(str(dst / "adapter.safetensors"))["SOI"].dtype == torch.bfloat16


# --- (b) a pickle that would run code is refused before it runs ---------------------------------------------

def test_pickle_with_disallowed_global_is_refused_unexecuted(release, tmp_path):
    marker = tmp_path / "pwned"
    folder = _copy_release(release, tmp_path)
    torch.save(RunsCode(marker), folder / "projection.pt")
    with pytest.raises(ValueError, match=r"refusing to load (posix|os)\.system"):
        convert(folder, tmp_path / "out", release.clip, echo=lambda m: None)
    assert not marker.exists() and not (tmp_path / "out").exists()

    # Hidden inside an otherwise genuine adapter module.
    def smuggle(module):
        module.extra = RunsCode(marker)

    save_projection(folder / "projection.pt", tmp_path / "code", mutate=smuggle)
    with pytest.raises(ValueError, match="refusing"):
        load_projection(folder / "projection.pt")
    assert not marker.exists()


# --- (c) sizes that do not fit are named --------------------------------------------------------------------

def test_shape_mismatch_names_the_key(release, tmp_path):
    folder = _copy_release(release, tmp_path)

    def bad_norm(module):
        module.transformer_layer.norm1 = torch.nn.LayerNorm(65)

    save_projection(folder / "projection.pt", tmp_path / "code", mutate=bad_norm)
    with pytest.raises(ValueError, match=r"transformer_layer\.norm1\.weight: checkpoint \(65,\) != model \(64,\)"):
        convert(folder, tmp_path / "out1", release.clip, echo=lambda m: None)

    folder = _copy_release(release, tmp_path / "b")
    special = {k: v.detach() for k, v in release.special.items()} | {"SOI": torch.zeros(65, dtype=torch.bfloat16)}
    torch.save(special, folder / "special_embeddings.pt")
    with pytest.raises(ValueError, match="SOI is"):
        convert(folder, tmp_path / "out2", release.clip, echo=lambda m: None)

    narrow_clip = tmp_path / "clip-32"
    save_clip(narrow_clip, width=32)
    with pytest.raises(ValueError, match="in_proj_weight reads 64-wide features, the CLIP tower gives 32"):
        convert(release.folder, tmp_path / "out3", narrow_clip, echo=lambda m: None)
    assert not any((tmp_path / f"out{i}").exists() for i in (1, 2, 3))


def test_cli_without_clip_says_what_is_missing(release, tmp_path, capsys):
    assert main([str(release.folder), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "openai/clip-vit-large-patch14-336" in err and "--clip" in err and "Traceback" not in err
    assert MISSING_CLIP in err


def test_refuses_a_non_empty_destination(release, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        convert(release.folder, tmp_path / "out", release.clip, echo=lambda m: None)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


# --- (d) the real sizes, on the meta device -----------------------------------------------------------------

def test_real_adapter_has_the_released_keys_and_shapes():
    with torch.device("meta"):
        adapter = Adapter(preset_config("omnifusion-1.1"))
    shapes = {k: tuple(v.shape) for k, v in adapter.state_dict().items()}
    assert shapes == {
        "transformer_layer.self_attn.in_proj_weight": (3072, 1024),
        "transformer_layer.self_attn.in_proj_bias": (3072,),
        "transformer_layer.self_attn.out_proj.weight": (1024, 1024),
        "transformer_layer.self_attn.out_proj.bias": (1024,),
        "transformer_layer.linear1.weight": (2048, 1024),
        "transformer_layer.linear1.bias": (2048,),
        "transformer_layer.linear2.weight": (1024, 2048),
        "transformer_layer.linear2.bias": (1024,),
        "transformer_layer.norm1.weight": (1024,),
        "transformer_layer.norm1.bias": (1024,),
        "transformer_layer.norm2.weight": (1024,),
        "transformer_layer.norm2.bias": (1024,),
        "linear.weight": (4096, 1024),
        "linear.bias": (4096,),
    }


def test_real_vision_tower_stops_after_block_23():
    with torch.device("meta"):
        tower = VisionEncoder(preset_config("omnifusion-1.1")).tower
    blocks = tower.transformer.resblocks
    assert len(blocks) == 23
    assert all(b.attn.embed_dim == 1024 and b.attn.in_proj_weight.shape == (3072, 1024) for b in blocks)
    assert tuple(tower.positional_embedding.shape) == (577, 1024)
    assert tuple(tower.conv1.weight.shape) == (1024, 3, 14, 14)


def test_real_release_sizes_infer_exactly_the_preset():
    """Mistral-7B-v0.1's config.json, CLIP ViT-L/14-336's and the released adapter's sizes -> omnifusion-1.1."""
    clip = ClipWeights(state={}, image_size=336, patch_size=14, width=1024, layers=24, heads=16, mlp_ratio=4.0,
                       quick_gelu=True, source="transformers")
    adapter = ReleasedAdapter(state={}, width=1024, heads=4, ff=2048, dropout=0.1, out=4096, n_embeddings=576,
                              embedding_dim=4096)
    mistral = SimpleNamespace(hidden_size=4096, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=8,
                              intermediate_size=14336, vocab_size=32000, max_position_embeddings=32768,
                              sliding_window=4096)
    assert infer_config(clip, adapter, mistral) == preset_config("omnifusion-1.1")
    assert infer_config(clip, adapter, mistral, "omnifusion-1.0") == preset_config("omnifusion-1.1").replace(
        preset="omnifusion-1.0")
    with pytest.raises(ValueError, match="n_embeddings=576, CLIP gives 256 patches"):
        infer_config(ClipWeights(**{**clip.__dict__, "image_size": 224}), adapter, mistral)


def test_the_real_special_embeddings_fit_the_real_adapter():
    """The release's own special_embeddings.pt (tests/fixtures): four bf16 [4096] vectors, read without code."""
    special = load_special(Path(__file__).parent / "fixtures" / "omnifusion-1.1" / "special_embeddings.pt")
    assert list(special) == list(SPECIALS)
    with torch.device("meta"):
        holder = _AdapterHolder(preset_config("omnifusion-1.1"))
    for name, vector in special.items():
        assert vector.dtype == torch.bfloat16 and vector.shape == holder.special[name].shape == (4096,)
        assert vector.float().norm() > 0
