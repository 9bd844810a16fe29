"""Pipeline overhead: median time from XADD to `done` minus the bare model time for the same dialog.

The bare time runs in this process (image decode + CLIP + adapter + generation, no Redis); the pipeline time
goes through a real worker process and the reply stream, exactly as the bot reads it. Each round uses a new
photo, so the worker's feature cache cannot flatter it. Goal: <= 10 ms.
    python bench/pipeline_overhead.py [--rounds 30] [--tokens 16] [--preset tiny]
"""

from __future__ import annotations

import argparse
import io
import statistics
import time

import torch
from common import private_redis, submit, wait_done, worker_process
from PIL import Image

from model import protocol
from model.checkpoint import load_model
from model.dialog import encode_dialog
from model.images import load_image
from model.serving.engine import SamplingParams, generate


def photo(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (i % 256, (7 * i) % 256, (13 * i) % 256)).save(buf, "PNG")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--tokens", type=int, default=16)
    ap.add_argument("--preset", default="tiny")
    args = ap.parse_args()
    params = {"max_new_tokens": args.tokens, "stop": [], "wrap_up": 0, "temperature": 0}
    sampling = SamplingParams(max_new_tokens=args.tokens, stop=())

    def dialog(key):
        return [{"role": "user", "content": [{"type": "image", "key": key},
                                             {"type": "text", "text": "What is on this photo?"}]}]

    model = load_model(args.preset, device="cpu")

    def bare_round(data: bytes) -> float:
        start = time.perf_counter()
        with torch.inference_mode():
            enc = encode_dialog(dialog("k"), model.tokenizer, model.config)
            feats = model.encode_images([load_image(data)])
            embeds, _ = model.embed_dialog(enc, list(feats))
            generate(model, [embeds], sampling)
        return time.perf_counter() - start

    # Bare and pipeline rounds alternate, so a shared machine's drift hits both alike; the figure is the
    # median of the per-round differences.
    bare, e2e = [], []
    with private_redis() as (url, client), worker_process(url, args.preset, device="cpu",
                                                          worker_delta_interval_s=0.15):
        for i in range(args.rounds + 3):
            bare.append(bare_round(photo(1000 + i)))
            data = photo(i)
            key = protocol.image_key_for(data)
            client.set(key, data, ex=600)
            start = time.perf_counter()
            done = wait_done(client, submit(client, dialog(key), params))
            e2e.append(time.perf_counter() - start)
            assert done["tokens"] == args.tokens
    bare, e2e = bare[3:], e2e[3:]  # warm-up
    b, p = statistics.median(bare) * 1000, statistics.median(e2e) * 1000
    diff = statistics.median(x - y for x, y in zip(e2e, bare, strict=True)) * 1000
    print(f"preset {args.preset}, {args.rounds} rounds, {args.tokens} new tokens, one image each")
    print(f"bare model:      median {b:7.2f} ms")
    print(f"XADD -> done:    median {p:7.2f} ms")
    print(f"pipeline overhead (median of per-round differences): {diff:.2f} ms")


if __name__ == "__main__":
    main()
