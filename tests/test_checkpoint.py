"""Our checkpoint format round-trips exactly; presets and devices resolve; the 8-bit path works on CPU."""

import json

import pytest
import torch

from model.checkpoint import load_model
from model.config import OmniFusionConfig, preset_config
from model.dialog import encode_dialog
from model.omnifusion import OmniFusion
from model.serving.engine import SamplingParams, generate
from model.weights import ADAPTER_FILE, VISION_FILE, resolve_device, resolve_dtype
from tests.model_helpers import drawn_image, key, user


@pytest.fixture(scope="module")
def model():
    return load_model("tiny", device="cpu")


def logits_for(model, image):
    d = encode_dialog([user("What is on this photo?", key("a"))], model.tokenizer, model.config)
    embeds, _ = model.embed_dialog(d, list(model.encode_images([image])))
    with torch.inference_mode():
        return model.llm(inputs_embeds=embeds[None]).logits[0], embeds


def test_save_load_round_trip_is_exact(model, tmp_path):
    model.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} >= {"config.json", ADAPTER_FILE, VISION_FILE, "llm"}
    loaded = OmniFusion.from_pretrained(tmp_path, device="cpu")
    assert loaded.config == model.config
    img = drawn_image()
    a, ea = logits_for(model, img)
    b, eb = logits_for(loaded, img)
    assert torch.equal(ea, eb) and torch.equal(a, b)
    p = SamplingParams(max_new_tokens=10, stop=())
    assert generate(loaded, [eb], p)[0] == generate(model, [ea], p)[0]


def test_an_in_memory_llm_takes_its_rope_base_from_the_config_and_keeps_it_when_saved(tmp_path):
    """llm_rope_theta (the demo preset's is Mistral v0.2's 1e6): the rotary frequencies are built from it, the
    checkpoint's LLM carries it, and a model saved with it loads with it."""
    from model.checkpoint import build_in_memory

    cfg = preset_config("tiny").replace(llm_rope_theta=1e6)
    model = build_in_memory(cfg, device="cpu")
    head_dim = cfg.llm_hidden_size // cfg.llm_heads
    expected = 1.0 / 1e6 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    torch.testing.assert_close(model.llm.model.rotary_emb.inv_freq, expected)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "llm" / "config.json").read_text())["rope_parameters"]["rope_theta"] == 1e6
    loaded = OmniFusion.from_pretrained(tmp_path, device="cpu")
    torch.testing.assert_close(loaded.llm.model.rotary_emb.inv_freq, expected)
    default = build_in_memory(preset_config("tiny"), device="cpu").llm.model.rotary_emb.inv_freq
    assert not torch.allclose(default, expected)  # the tiny preset keeps the 1e4 of Mistral v0.1


def test_adapter_file_holds_released_keys_and_vectors(model, tmp_path):
    from safetensors import safe_open

    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / ADAPTER_FILE), "pt") as f:
        keys = set(f.keys())
    assert {"SOI", "EOI", "USER", "BOT", "linear.weight", "linear.bias"} <= keys
    assert all(k in {"SOI", "EOI", "USER", "BOT"} or k.split(".")[0] in {"transformer_layer", "linear"} for k in keys)


def test_shape_mismatch_names_the_key(model, tmp_path):
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["adapter_ff"] = 96
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=r"transformer_layer\.linear1\.weight"):
        OmniFusion.from_pretrained(tmp_path, device="cpu")


def test_released_folder_gets_a_conversion_hint(tmp_path):
    (tmp_path / "projection.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="model.convert"):
        OmniFusion.from_pretrained(tmp_path)


def test_config_json_round_trip_and_unknown_keys(tmp_path):
    cfg = preset_config("omnifusion-1.1")
    assert cfg.vision_num_patches == 576 and cfg.adapter_out == 4096
    cfg.save(tmp_path / "c.json")
    assert OmniFusionConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ValueError, match="unknown config keys: bogus"):
        OmniFusionConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="unknown preset"):
        preset_config("nope")
    with pytest.raises(ValueError, match="MODEL_PATH"):
        load_model("omnifusion-1.1")


def test_auto_device_and_dtype():
    device = resolve_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_dtype(torch.device("cpu")) == torch.float32
    assert resolve_dtype(torch.device("cuda")) == torch.bfloat16


def test_int8_llm_on_cpu_stays_close_to_float(model):
    pytest.importorskip("bitsandbytes")
    q = load_model("tiny", device="cpu", load_in_8bit=True)
    linear = q.llm.model.layers[0].self_attn.q_proj
    assert linear.weight.dtype == torch.int8
    assert q.llm.lm_head.weight.dtype == torch.float32  # kept out of int8
    assert next(q.adapter.parameters()).dtype == torch.float32
    img = drawn_image()
    a, _ = logits_for(model, img)
    b, eb = logits_for(q, img)
    cos = torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0)
    assert cos > 0.99, cos
    text, finish, tokens = generate(q, [eb], SamplingParams(max_new_tokens=8, stop=()))[0]
    assert finish == "length" and len(tokens) == 8
    with pytest.raises(ValueError, match="8-bit"):
        q.save_pretrained("/nonexistent")


@pytest.mark.gpu
def test_cuda_bf16_matches_cpu_greedy_prefix(model):
    gpu = load_model("tiny", device="cuda")
    assert gpu.dtype == torch.bfloat16 and next(gpu.vision.parameters()).is_cuda
    img = drawn_image()
    a, _ = logits_for(model, img)
    b, _ = logits_for(gpu, img)
    cos = torch.nn.functional.cosine_similarity(a.flatten(), b.float().cpu().flatten(), dim=0)
    assert cos > 0.98
