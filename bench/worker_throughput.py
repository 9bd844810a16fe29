"""Worker throughput: 16 concurrent jobs vs the same 16 jobs one at a time, on the same worker process.

Prints tokens/s of both and their ratio (last line). Preset `bench` (~29M parameters) by default, so the
model's arithmetic rather than Python dominates. Goal on a 2-core CPU: >= 6x.
    python bench/worker_throughput.py [--jobs 16] [--tokens 128] [--preset bench]

`--prefill-mix` measures instead what grouping prompts by length saves (in process, no Redis): one 900-token
prompt and fifteen 20-token ones prefilled as one left-padded batch vs in length groups, median of 5 each.
    python bench/worker_throughput.py --prefill-mix [--preset bench]
"""

from __future__ import annotations

import argparse
import io
import time

from common import private_redis, submit, wait_done, worker_process
from PIL import Image

from model import protocol


def photo(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (i * 37 % 256, i * 91 % 256, i * 53 % 256)).save(buf, "PNG")
    return buf.getvalue()


def prefill_mix(preset: str) -> None:
    import statistics

    import torch

    from model.checkpoint import load_model
    from model.serving import batching
    from model.serving.engine import BatchGenerator, Request, SamplingParams

    model = load_model(preset, device="cpu")
    table = model.llm.get_input_embeddings()
    with torch.inference_mode():
        n = table.num_embeddings
        prompts = [table(torch.arange(900) % n), *(table((torch.arange(20) + 20 * i) % n) for i in range(15))]
    params = SamplingParams(max_new_tokens=1, stop=())

    def once(share: float) -> float:
        batching.MAX_PREFILL_PADDING = share  # 1.0: every prompt joins one group, as before grouping
        start = time.perf_counter()
        BatchGenerator(model).add([Request(str(i), p, params) for i, p in enumerate(prompts)])
        return time.perf_counter() - start

    default = batching.MAX_PREFILL_PADDING
    once(default)  # warm-up
    padded, grouped = [], []
    for _ in range(5):  # alternating, so a shared machine's drift hits both alike
        padded.append(once(1.0))
        grouped.append(once(default))
    padded_s, grouped_s = statistics.median(padded), statistics.median(grouped)
    print(f"preset {preset}: prefill of 1 x 900 + 15 x 20 tokens")
    print(f"one padded batch (16 x 900 positions): {padded_s * 1000:8.1f} ms")
    print(f"length groups (900 + 15 x 20):         {grouped_s * 1000:8.1f} ms")
    print(f"ratio padded / grouped: {padded_s / grouped_s:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--preset", default="bench")
    ap.add_argument("--prefill-mix", action="store_true")
    args = ap.parse_args()
    if args.prefill_mix:
        return prefill_mix(args.preset)
    params = {"max_new_tokens": args.tokens, "stop": [], "wrap_up": 0, "temperature": 0}
    with private_redis() as (url, client):
        keys = []
        for i in range(args.jobs):
            data = photo(i)
            keys.append(protocol.image_key_for(data))
            client.set(keys[-1], data, ex=3600)
        dialogs = [[{"role": "user", "content": [{"type": "image", "key": k},
                                                 {"type": "text", "text": f"What is on photo number {i}?"}]}]
                   for i, k in enumerate(keys)]
        with worker_process(url, args.preset, worker_max_batch=args.jobs, worker_image_cache=0):
            wait_done(client, submit(client, dialogs[0], params))  # warm-up

            start, tokens = time.perf_counter(), 0
            for d in dialogs:
                tokens += wait_done(client, submit(client, d, params))["tokens"]
            one_by_one = tokens / (time.perf_counter() - start)

            start = time.perf_counter()
            jobs = [submit(client, d, params) for d in dialogs]
            tokens = sum(wait_done(client, j)["tokens"] for j in jobs)
            together = tokens / (time.perf_counter() - start)
    print(f"preset {args.preset}, {args.jobs} jobs x {args.tokens} new tokens, image + question each")
    print(f"one at a time: {one_by_one:8.1f} tokens/s")
    print(f"concurrent:    {together:8.1f} tokens/s")
    print(f"ratio concurrent / one-at-a-time: {together / one_by_one:.2f}x")


if __name__ == "__main__":
    main()
