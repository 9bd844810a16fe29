"""Text generation: per-request sampling in one batch that requests join and leave between steps.

`BatchGenerator` is the engine the worker drives (continuous batching: `add` prefills new requests and merges
them into the running batch, `step` decodes one token for every row, finished rows leave at once).
`generate` and `stream` are the one-call forms for scripts and tests. The release's own 3-beam settings are
model/release/generation.py.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from model.serving.batching import isolate, length_groups
from model.serving.kvcache import BatchCache
from model.serving.stopping import StopChecker
from model.tokenizer import IncrementalDecoder

# Every decoded token is checked against every stop string: a client must not make that cost unbounded.
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 64


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # JSON `true` is not a number


def _is_number(value) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


@dataclass
class SamplingParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    top_k: int = 0  # 0 = off
    seed: int | None = None  # None: a fresh random seed per request
    stop: tuple[str, ...] | None = None  # None: the model's prompt_stop
    wrap_up: float = 0.0  # see model/serving/stopping.py; 0 = off

    def __post_init__(self):
        problems = []
        if not _is_int(self.max_new_tokens) or not 1 <= self.max_new_tokens <= 8192:
            problems.append("max_new_tokens must be an integer in 1..8192")
        if not _is_number(self.temperature) or not 0 <= self.temperature <= 5:
            problems.append("temperature must be a number in 0..5")
        if not _is_number(self.top_p) or not 0 < self.top_p <= 1:
            problems.append("top_p must be a number in (0, 1]")
        if not _is_int(self.top_k) or self.top_k < 0:
            problems.append("top_k must be a non-negative integer")
        if self.seed is not None and (not _is_int(self.seed) or not 0 <= self.seed < 2**63):
            problems.append("seed must be an integer in 0..2**63-1")
        if not _is_number(self.wrap_up) or not 0 <= self.wrap_up < 1:
            problems.append("wrap_up must be a number in [0, 1)")
        if self.stop is not None:
            if (not isinstance(self.stop, list | tuple) or len(self.stop) > MAX_STOP_STRINGS
                    or not all(isinstance(s, str) and len(s) <= MAX_STOP_CHARS for s in self.stop)):
                problems.append(f"stop must be a list of at most {MAX_STOP_STRINGS} strings of at most "
                                f"{MAX_STOP_CHARS} characters")
            else:
                self.stop = tuple(self.stop)
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_dict(cls, params: dict, **defaults) -> SamplingParams:
        """Protocol `params` -> SamplingParams; unknown keys are ignored, bad values raise ValueError."""
        known = {k: params[k] for k in cls.__dataclass_fields__ if k in params}
        return cls(**{**defaults, **known})


@dataclass
class Request:
    id: str
    embeds: torch.Tensor  # [T, H]
    params: SamplingParams = field(default_factory=SamplingParams)


@dataclass
class Event:
    id: str
    text: str  # new text safe to show (may be empty)
    finish: str | None = None  # stop | length | cancelled | error when the request is over
    tokens: int = 0  # tokens generated so far
    error: Exception | None = None  # finish == "error": what this request alone failed with


class _Row:
    def __init__(self, request: Request, tokenizer, default_stop):
        p = request.params
        self.id, self.params = request.id, p
        self.decoder = IncrementalDecoder(tokenizer)
        self.stopper = StopChecker(p.stop if p.stop is not None else default_stop, p.max_new_tokens, p.wrap_up)
        self.generator = torch.Generator().manual_seed(
            p.seed if p.seed is not None else int(torch.randint(0, 2**62, (1,)).item()))
        self.tokens: list[int] = []
        self.started = time.monotonic()
        self.first_token_at: float | None = None


def _sample(logits: torch.Tensor, p: SamplingParams, generator: torch.Generator) -> int:
    """logits [V] (float32, CPU) -> token id."""
    if p.temperature == 0:
        return int(logits.argmax())
    logits = logits / p.temperature
    if p.top_k:
        kth = torch.topk(logits, min(p.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, -1)
    if p.top_p < 1:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(-1) - sorted_probs > p.top_p  # keep the smallest set reaching top_p
        sorted_probs[outside] = 0
        probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
    return int(torch.multinomial(probs, 1, generator=generator))


class BatchGenerator:
    def __init__(self, model):
        if model.device.type == "cuda":
            # cuDNN's attention plans a new graph for every KV length it sees (~1 ms of CPU per layer per decode
            # step: 3x slower than plain HF generate at 7B, measured on an H100). The memory-efficient kernel
            # takes our padding masks without planning. Process-wide, but only ever set to this value.
            torch.backends.cuda.enable_cudnn_sdp(False)
        self.model = model
        self.eos = model.tokenizer.eos_token_id
        self.default_stop = model.config.prompt_stop
        self.rows: list[_Row] = []
        self.kv = BatchCache()

    def __len__(self) -> int:
        return len(self.rows)

    def tokens_in_flight(self) -> int:
        return self.kv.tokens()

    def slots(self) -> int:
        return self.kv.slots()

    def budgets(self) -> list[tuple[int, int]]:
        """(tokens in the cache, tokens it may still generate) per row: what admission plans with."""
        if not self.rows:
            return []
        held = self.kv.mask.sum(-1).tolist()
        return [(int(n), r.params.max_new_tokens - len(r.tokens)) for n, r in zip(held, self.rows, strict=True)]

    @torch.inference_mode()
    def add(self, requests: list[Request]) -> list[Event]:
        """Prefill `requests` and join them to the batch; returns their first-token events. Requests of similar
        length are prefilled together; a request whose prefill fails even alone gets an `error` event, and
        the rest join as if it had never been there."""
        events = []
        for group in length_groups(requests, lambda r: r.embeds.shape[0]):
            ran, failed = isolate(group, self._prefill)
            for _, (rows, cache, mask, logits) in ran:
                self.kv.join(cache, mask)
                self.rows.extend(rows)
                events += self._advance(rows, logits)
            events += [Event(r.id, "", "error", 0, error=exc) for r, exc in failed]
        return events

    def _prefill(self, requests: list[Request]):
        """Runs the model on `requests`; touches no engine state, so a failure leaves no trace."""
        rows = [_Row(r, self.model.tokenizer, self.default_stop) for r in requests]
        batch = self.model.pad_batch([r.embeds for r in requests], left=True)
        cache = DynamicCache()
        out = self.model.llm(inputs_embeds=batch["inputs_embeds"], attention_mask=batch["attention_mask"],
                             position_ids=batch["position_ids"], cache=cache, use_cache=True, logits_to_keep=1)
        return rows, cache, batch["attention_mask"], out.logits[:, -1]

    @torch.inference_mode()
    def step(self) -> list[Event]:
        """One token for every row. If the batched step raises, only a row that also fails alone ends (with an
        `error` event); the others get their token."""
        if not self.rows:
            return []
        try:
            logits = self._decode(self.kv, self.rows)
        except Exception as exc:  # noqa: BLE001 - an OOM or one row's bad state: find out which, below
            return self._step_isolating(exc)
        return self._advance(self.rows, logits)

    def _decode(self, kv: BatchCache, rows: list[_Row]) -> torch.Tensor:
        last = torch.tensor([[r.tokens[-1]] for r in rows], device=self.model.device)  # [B, 1]
        out = self.model.llm(input_ids=last, attention_mask=kv.step_mask(), position_ids=kv.next_positions(),
                             cache=kv.cache, use_cache=True)
        kv.after_step()
        return out.logits[:, -1]  # [B, V]

    def _step_isolating(self, error: Exception) -> list[Event]:
        # The failed pass may have appended a column to some layers: undo that, then bisect the batch on copies
        # of its rows (memory for one more copy of the cache, briefly) and rebuild it from the parts that ran.
        self.kv.rollback()
        rows, kv = self.rows, self.kv
        self.rows, self.kv = [], BatchCache()

        def attempt(indices: list[int]):
            part = kv.subset(indices)
            return part, self._decode(part, [rows[i] for i in indices])

        ran, failed = isolate(list(range(len(rows))), attempt, failed_whole=error)
        events = []
        for indices, (part, logits) in ran:
            self.kv.join(part.cache, part.mask)
            self.rows.extend(rows[i] for i in indices)
            events += self._advance([rows[i] for i in indices], logits)
        return events + [Event(rows[i].id, "", "error", len(rows[i].tokens), error=exc) for i, exc in failed]

    def cancel(self, request_id: str) -> Event | None:
        for r in self.rows:
            if r.id == request_id:
                event = Event(r.id, r.stopper.close("cancelled"), "cancelled", len(r.tokens))
                self._drop([r])
                return event
        return None

    def _advance(self, rows: list[_Row], logits: torch.Tensor) -> list[Event]:
        logits = logits.float().cpu()  # [len(rows), V]
        events, finished = [], []
        for r, row_logits in zip(rows, logits, strict=True):
            try:
                token = _sample(row_logits, r.params, r.generator)
                r.tokens.append(token)
                r.first_token_at = r.first_token_at or time.monotonic()
                is_eos = token == self.eos
                text = r.stopper.feed("" if is_eos else r.decoder.push(token), len(r.tokens), eos=is_eos)
                events.append(Event(r.id, text, r.stopper.finish, len(r.tokens)))
            except Exception as exc:  # noqa: BLE001 - e.g. NaN logits in one row: that row ends, not the batch
                events.append(Event(r.id, "", "error", len(r.tokens), error=exc))
                finished.append(r)
                continue
            if r.stopper.finish:
                finished.append(r)
        self._drop(finished)
        return events

    def _drop(self, rows: list[_Row]) -> None:
        if rows:
            gone = {id(r) for r in rows}
            keep = [i for i, r in enumerate(self.rows) if id(r) not in gone]
            self.kv.keep(keep)
            self.rows = [self.rows[i] for i in keep]


def _raising(events: list[Event]) -> list[Event]:
    """The one-call forms serve one caller: a request that failed is that caller's exception."""
    for e in events:
        if e.error is not None:
            raise e.error
    return events


def stream(model, embeds: torch.Tensor, params: SamplingParams | None = None) -> Iterator[Event]:
    """One request, events as tokens come."""
    engine = BatchGenerator(model)
    events = _raising(engine.add([Request("0", embeds, params or SamplingParams())]))
    while events:
        yield from (e for e in events if e.text or e.finish)
        events = _raising(engine.step()) if engine.rows else []


def generate(model, embeds: list[torch.Tensor], params: SamplingParams | list[SamplingParams] | None = None
             ) -> list[tuple[str, str, list[int]]]:
    """Several requests batched together -> [(text, finish, token ids)] in input order."""
    params = params if isinstance(params, list) else [params or SamplingParams()] * len(embeds)
    engine = BatchGenerator(model)
    texts = {str(i): "" for i in range(len(embeds))}
    done: dict[str, tuple[str, list[int]]] = {}
    rows = {}
    events = _raising(engine.add([Request(str(i), e, p)
                                  for i, (e, p) in enumerate(zip(embeds, params, strict=True))]))
    rows.update({r.id: r for r in engine.rows})
    while events:
        for e in events:
            texts[e.id] += e.text
            if e.finish:
                done[e.id] = (e.finish, rows[e.id].tokens)
        events = _raising(engine.step()) if engine.rows else []
    return [(texts[str(i)], *done[str(i)]) for i in range(len(embeds))]


@torch.inference_mode()
def greedy_without_cache(model, embeds: torch.Tensor, max_new_tokens: int) -> list[int]:
    """Reference decoder: the whole sequence again at every step, no KV cache. For tests."""
    table = model.llm.get_input_embeddings()
    seq, out = embeds[None], []
    for _ in range(max_new_tokens):
        logits = model.llm(inputs_embeds=seq, use_cache=False).logits[0, -1]
        token = int(logits.float().argmax())
        out.append(token)
        if token == model.tokenizer.eos_token_id:
            break
        seq = torch.cat([seq, table(torch.tensor([[token]], device=seq.device)).to(seq.dtype)], dim=1)
    return out
