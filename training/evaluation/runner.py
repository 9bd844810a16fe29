"""The model side of evaluation: batched answers through the serving engine, batched candidate likelihoods.

    answer_all(model, prompts, params, batch_size) -> [answer text]        (generation tasks)
    score_candidates(model, context, candidates, batch_size) -> [log p]     (ranking tasks: VisDial)
    candidate_likelihoods(...) -> [(log p, tokens, is greedy)]             (lmms-eval's loglikelihood)

A `Prompt` is a question with its images (files or PIL images), or a whole dialog in the protocol's message
format whose image parts name an image by its index (`{"type": "image", "key": "0"}`). Images are read only
when their prompt enters the batch, so a 100k-question run holds a batch's worth of pixels, not the set's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch
from PIL import Image
from tqdm import tqdm
from transformers import DynamicCache

from model.dialog import DialogTooLong, encode_dialog
from model.images import ImageError, load_image
from model.serving.engine import BatchGenerator, Request, SamplingParams
from training.evaluation.common import EvalError


class GenerationFailed(EvalError):
    def __init__(self, index: int, error: Exception):
        super().__init__(f"prompt {index} failed in the engine: {error!r}")
        self.index, self.error = index, error


class Likelihood(NamedTuple):
    logp: float  # natural log, summed over the candidate's tokens
    tokens: int
    greedy: bool  # greedy decoding would produce every one of its tokens


@dataclass
class Prompt:
    text: str | list[dict]  # a question (one user turn after the images), or protocol messages
    images: Sequence[Path | Image.Image] = field(default_factory=list)

    def messages(self) -> list[dict]:
        if isinstance(self.text, list):
            return self.text
        parts = [{"type": "image", "key": str(i)} for i in range(len(self.images))]
        return [{"role": "user", "content": [*parts, {"type": "text", "text": self.text}]}]


def _read(image: Path | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    try:
        return load_image(Path(image).read_bytes())
    except OSError as exc:
        raise EvalError(f"cannot read image {image}: {exc.strerror or exc}") from None
    except ImageError as exc:
        raise EvalError(f"image {image}: {exc.message} ({exc.code})") from None


@torch.inference_mode()
def embed(model, prompts: Sequence[Prompt], room: int = 0) -> list[torch.Tensor]:
    """Prompts -> input embeddings [T, H] each; all their images go through CLIP in one batch. `room`: tokens to
    keep free after the prompt (the answer)."""
    dialogs = []
    for p in prompts:
        try:
            dialogs.append(encode_dialog(p.messages(), model.tokenizer, model.config,
                                         max_tokens=model.config.llm_max_context - room))
        except DialogTooLong as exc:
            raise EvalError(f"a prompt does not fit the model's context ({exc}): {str(p.text)[:80]!r}") from None
    wanted = [(p, int(k)) for p, d in zip(prompts, dialogs, strict=True) for k in d.image_keys]
    features = model.encode_images([_read(p.images[k]) for p, k in wanted]) if wanted else []
    out, offset = [], 0
    for d in dialogs:
        out.append(model.embed_dialog(d, features[offset:offset + len(d.image_keys)])[0])
        offset += len(d.image_keys)
    return out


def answer_all(model, prompts: Sequence[Prompt], params: SamplingParams | Sequence[SamplingParams] | None = None,
               batch_size: int = 16, progress: bool = True, on_answer: Callable[[int, str], None] | None = None
               ) -> list[str]:
    """Greedy (by default) answers in input order, stripped as LLaVA's evaluation scripts strip them.

    Continuous batching: up to `batch_size` prompts decode together and a finished one is replaced by the
    next at once, so a long answer never holds up the rest. `on_answer(index, text)` is called as each one
    finishes (the CLI writes predictions as they come, so an interrupted run keeps them). `params`: one for
    all, or one per prompt."""
    params = params or SamplingParams(max_new_tokens=16, temperature=0.0)
    per_prompt = list(params) if isinstance(params, Sequence) else [params] * len(prompts)
    engine = BatchGenerator(model)
    texts: dict[int, str] = {}
    answers: list[str | None] = [None] * len(prompts)
    next_prompt = 0
    with tqdm(total=len(prompts), disable=not progress, desc="answering", unit="q") as bar:
        while next_prompt < len(prompts) or len(engine):
            events = []
            free = batch_size - len(engine)
            if free > 0 and next_prompt < len(prompts):  # refill, then decode everyone: nobody waits a turn
                chunk = range(next_prompt, min(len(prompts), next_prompt + free))
                next_prompt = chunk.stop
                room = max(per_prompt[i].max_new_tokens for i in chunk)
                embeds = embed(model, [prompts[i] for i in chunk], room)
                events += engine.add([Request(str(i), e, per_prompt[i]) for i, e in zip(chunk, embeds, strict=True)])
            if len(engine):
                events += engine.step()
            for event in events:
                i = int(event.id)
                if getattr(event, "error", None) is not None:  # that prompt alone failed (engine's isolation)
                    raise GenerationFailed(i, event.error)
                texts[i] = texts.get(i, "") + event.text
                if event.finish:
                    answers[i] = texts.pop(i).strip()
                    bar.update(1)
                    if on_answer:
                        on_answer(i, answers[i])
    return answers


def score_candidates(model, context: Prompt, candidates: Sequence[str], batch_size: int = 32) -> list[float]:
    """Log-likelihood (natural log, summed over tokens) of each candidate as the assistant's next answer.
    See candidate_likelihoods."""
    return [c.logp for c in candidate_likelihoods(model, context, candidates, batch_size)]


@torch.inference_mode()
def candidate_likelihoods(model, context: Prompt, candidates: Sequence[str], batch_size: int = 32
                          ) -> list[Likelihood]:
    """-> (log-likelihood, token count, whether greedy decoding gives it) per candidate.

    The context is run once; each batch of candidates continues from a copy of its KV cache, so 100
    candidates cost one prompt plus their own few tokens. The candidate's tokens are exactly those of an
    assistant answer in training (model.dialog), an EOS included where the model was trained to end with one.
    An empty candidate has no tokens to score and gets -inf rather than a free 0."""
    messages = context.messages()
    tokens = [_answer_tokens(model, messages, c) for c in candidates]
    longest = max((len(t) for t in tokens), default=0)
    prefix = embed(model, [context], room=longest)[0]  # [T, H]
    cache = DynamicCache()
    out = model.llm(inputs_embeds=prefix[None], cache=cache, use_cache=True)
    first = torch.log_softmax(out.logits[0, -1].float(), -1)  # [V]: predicts every candidate's first token
    scores: list[Likelihood] = []
    for start in range(0, len(tokens), batch_size):
        chunk = tokens[start:start + batch_size]
        width = max(1, max(len(t) for t in chunk))
        ids = torch.full((len(chunk), width), model.tokenizer.pad_token_id or 0, device=model.device)
        mask = torch.zeros(len(chunk), width, dtype=torch.long, device=model.device)
        for row, t in enumerate(chunk):
            ids[row, :len(t)] = torch.tensor(t, device=model.device)
            mask[row, :len(t)] = 1
        kv = copy.deepcopy(cache)
        kv.batch_repeat_interleave(len(chunk))
        attention = torch.cat([torch.ones(len(chunk), prefix.shape[0], dtype=torch.long, device=model.device),
                               mask], 1)
        positions = prefix.shape[0] + torch.arange(width, device=model.device).expand(len(chunk), -1)
        logits = model.llm(input_ids=ids, attention_mask=attention, position_ids=positions, cache=kv,
                           use_cache=True).logits.float()  # [B, W, V]
        logp = torch.cat([first.expand(len(chunk), 1, -1), torch.log_softmax(logits[:, :-1], -1)], 1)
        picked = logp.gather(-1, ids[..., None])[..., 0] * mask  # [B, W]
        greedy = ((logp.argmax(-1) == ids) | (mask == 0)).all(-1)  # [B]
        scores += [Likelihood(float(s), len(t), bool(g)) if len(t) else Likelihood(float("-inf"), 0, False)
                   for s, g, t in zip(picked.sum(-1), greedy, chunk, strict=True)]
    return scores


def _answer_tokens(model, messages: list[dict], candidate: str) -> list[int]:
    answer = {"role": "assistant", "content": [{"type": "text", "text": candidate}]}
    dialog = encode_dialog([*messages, answer], model.tokenizer, model.config)
    last = dialog.segments[-1]
    return last.ids if last.kind == "text" and last.trained else []
