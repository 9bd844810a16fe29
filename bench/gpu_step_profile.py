"""Where a decode step's time goes at the released geometry: the engine's step vs bare forward calls.
    python bench/gpu_step_profile.py [--small]
"""

from __future__ import annotations

import argparse
import time

import torch
from gpu_engine import build, sync
from transformers import DynamicCache

from model.dialog import encode_dialog
from model.serving.engine import BatchGenerator, Request, SamplingParams


def timed(label, fn, device, n=30):
    fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    sync(device)
    print(f"{label:55s} {(time.perf_counter() - start) / n * 1000:8.2f} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.small else "cpu")
    model = build(args.small, device)
    msgs = [{"role": "user", "content": [{"type": "text", "text": "Describe a photo of a cat. " * 20}]}]
    d = encode_dialog(msgs, model.tokenizer, model.config)
    embeds, _ = model.embed_dialog(d, [])
    engine = BatchGenerator(model)
    engine.add([Request("a", embeds, SamplingParams(max_new_tokens=10**4 // 2, stop=()))])
    timed("engine.step (batch 1)", engine.step, device)
    llm = model.llm
    with torch.inference_mode():
        cache = DynamicCache()
        llm(inputs_embeds=embeds[None], cache=cache, use_cache=True)
        ids = torch.tensor([[5]], device=device)

        def bare_no_mask():
            llm(input_ids=ids, cache=cache, use_cache=True)
            cache.crop(-1)

        def bare_mask_pos():
            n = cache.get_seq_length()
            llm(input_ids=ids, attention_mask=torch.ones(1, n + 1, dtype=torch.long, device=device),
                position_ids=torch.tensor([[n]], device=device), cache=cache, use_cache=True)
            cache.crop(-1)

        timed("bare forward, no mask/positions", bare_no_mask, device)
        timed("bare forward, 2D mask + positions", bare_mask_pos, device)
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                engine.step()
            sync(device)
        print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
