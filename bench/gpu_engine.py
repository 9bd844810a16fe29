"""Engine throughput at the released geometry (CLIP ViT-L/14-336 + a Mistral-7B-shaped LLM, random weights,
bf16) on a GPU: prefill time, decode tokens/s of our continuous-batching engine at several batch sizes, and
plain HF `generate` at batch 1 for comparison. No weights needed; prints a table, the last line the ratio of
batch-16 to batch-1 tokens/s.
    python bench/gpu_engine.py [--small]   (--small: a CPU-sized dry run of the same code)
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import MistralConfig, MistralForCausalLM

from model.config import preset_config
from model.dialog import encode_dialog
from model.omnifusion import OmniFusion
from model.serving.engine import BatchGenerator, Request, SamplingParams
from model.tokenizer import build_tiny_tokenizer


def build(small: bool, device: torch.device) -> OmniFusion:
    base = preset_config("tiny" if small else "omnifusion-1.1")
    tokenizer = build_tiny_tokenizer(512)
    # The tokenizer is the tiny one, so the LLM's vocabulary is small: the real lm_head (4096 x 32000) is
    # ~2% of a 7B model's weights, which this run leaves out.
    cfg = base.replace(llm_vocab_size=len(tokenizer), llm_build_in_memory=True)
    llm_cfg = MistralConfig(vocab_size=cfg.llm_vocab_size, hidden_size=cfg.llm_hidden_size,
                            intermediate_size=cfg.llm_intermediate_size, num_hidden_layers=cfg.llm_layers,
                            num_attention_heads=cfg.llm_heads, num_key_value_heads=cfg.llm_kv_heads,
                            sliding_window=None, eos_token_id=tokenizer.eos_token_id)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.set_default_dtype(dtype)
    with torch.device(device):  # initialise on the GPU: 7B random weights in seconds, not minutes on a CPU
        model = OmniFusion(cfg, MistralForCausalLM(llm_cfg), tokenizer)
        model.init_special()
    torch.set_default_dtype(torch.float32)
    return model.to(device, dtype).eval()


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--tokens", type=int, default=128)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.small else "cpu")
    model = build(args.small, device)
    n_params = sum(p.numel() for p in model.parameters()) / 1e9
    print(f"device {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, {n_params:.2f}B parameters")
    pixels = torch.randn(1, 3, model.config.vision_image_size, model.config.vision_image_size, device=device)
    msgs = [{"role": "user", "content": [{"type": "image", "key": "k"}, {"type": "text", "text": "What is on this photo? Describe it."}]}]
    dialog = encode_dialog(msgs, model.tokenizer, model.config)
    with torch.inference_mode():
        for _ in range(2):
            sync(device)
            start = time.perf_counter()
            feats = model.encode_pixels(pixels)
            embeds, _ = model.embed_dialog(dialog, list(feats))
            model.llm(inputs_embeds=embeds[None], logits_to_keep=1)
            sync(device)
            prefill = time.perf_counter() - start
    print(f"image + prefill of {len(dialog)} tokens: {prefill * 1000:.1f} ms")
    params = SamplingParams(max_new_tokens=args.tokens, stop=())
    rates = {}
    for batch in (1, 4, 16, 32):
        engine = BatchGenerator(model)
        sync(device)
        start = time.perf_counter()
        engine.add([Request(str(i), embeds, params) for i in range(batch)])
        while len(engine):
            engine.step()
        sync(device)
        elapsed = time.perf_counter() - start
        rates[batch] = batch * args.tokens / elapsed
        print(f"engine batch {batch:2d}: {rates[batch]:8.1f} tokens/s ({elapsed:.2f} s incl. prefill)")
    with torch.inference_mode():
        mask = torch.ones(1, embeds.shape[0], dtype=torch.long, device=device)
        sync(device)
        start = time.perf_counter()
        out = model.llm.generate(inputs_embeds=embeds[None], attention_mask=mask, max_new_tokens=args.tokens,
                                 min_new_tokens=args.tokens, do_sample=False, pad_token_id=0)
        sync(device)
        hf = out.shape[1] / (time.perf_counter() - start)
    print(f"HF generate batch 1: {hf:8.1f} tokens/s")
    print(f"engine batch 1 vs HF generate: {rates[1] / hf:.2f}x")
    print(f"ratio batch 16 / batch 1 tokens/s: {rates[16] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
