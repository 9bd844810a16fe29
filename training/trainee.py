"""What each stage trains, and the one forward pass that every engine runs.

`Trainee` wraps the model so that a whole micro-batch (CLIP or cached features -> adapter -> splicing -> LLM ->
loss) happens inside a single `forward`. DDP and FSDP only see work done inside the forward of the module
they wrap: calling `model.adapter` and `model.llm` one by one from the loop would bypass their hooks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from model.dialog import IGNORE, EncodedDialog
from model.omnifusion import OmniFusion
from training.data import MicroBatch

TRAINED_PARTS = {1: ("adapter", "special"), 2: ("adapter", "special", "llm"), "vision": ("vision",),
                 "text": ("llm",)}


def freeze_for_stage(model: OmniFusion, stage: int, gradient_checkpointing: bool) -> list[str]:
    """Make exactly this stage's parts trainable; -> their names. CLIP is trained only by the vision stage."""
    model.requires_grad_(False)
    for part in TRAINED_PARTS[stage]:
        getattr(model, part).requires_grad_(True)
    model.train()
    model.vision.train(stage == "vision")
    if gradient_checkpointing:
        # Non-reentrant: also works in stage 1, where the LLM's weights are frozen and gradients only flow
        # through it to the spliced adapter outputs. HF checkpoints only in train mode, hence llm.train() below.
        kwargs = {"use_reentrant": False}
        if hasattr(model.llm, "activation_checkpointing_enable"):  # the name since transformers 5.2x
            model.llm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.llm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    # A frozen LLM still runs in train mode when checkpointing: Mistral has no dropout (attention_dropout 0),
    # so this changes nothing but enabling the recomputation.
    model.llm.train(stage in (2, "text") or gradient_checkpointing)
    return list(TRAINED_PARTS[stage])


# The patches a focus entry's object holds: those whose centres lie within this many of its radii of its centre,
# and always the patch of its centre; the core of the object, not its rim, whose patches the tower also fills with
# the background and neighbours. The demo's stage 2, from one start: 1.05 (the whole silhouette) 0.882 in all,
# 0.6 0.889, 0 (the centre's patch alone) 0.888; yes/no 0.94 / 0.96 / 0.95, several photos 0.81 / 0.83 / 0.84.
FOCUS_REACH = 0.6


def centre_cell(x: float, y: float, grid: int) -> int:
    """Row-major index of the patch (grid x grid over the unit square the model sees) that holds the point (x, y)."""
    return min(grid - 1, max(0, int(y * grid))) * grid + min(grid - 1, max(0, int(x * grid)))


def object_patches(x: float, y: float, r: float, grid: int) -> list[int]:
    """Row-major indices of the patches (grid x grid over the unit square the model sees) an object covers."""
    cells = {centre_cell(x, y, grid)}
    for i in range(grid):
        for j in range(grid):
            if math.hypot((j + 0.5) / grid - x, (i + 0.5) / grid - y) <= FOCUS_REACH * r:
                cells.add(i * grid + j)
    return sorted(cells)


class FocusMasks(NamedTuple):
    queries: torch.Tensor  # [..., T] bool: the positions of each focused turn's question and answer
    keys: torch.Tensor  # [..., heads, T, T] bool: what each focused head should attend to there
    counts: torch.Tensor  # [..., T] long: how many objects the turn names in head 0's picture (capped) at its
    # BOT and answer positions, IGNORE elsewhere (the question's first words cannot know it yet)
    tally: torch.Tensor | None  # [..., T, T] float, None when the tally is off: at those positions, its target,
    # shared evenly by head 0's picture's SOI and the patch of each named object's centre (zeros elsewhere)


def focus_cells(objects: list, grid: int) -> list[int]:
    """The patches a focus entry's objects ([x, y, r] each) hold, in row-major order."""
    return sorted({c for o in objects for c in object_patches(*o, grid)})


def focus_masks(dialog: EncodedDialog, focus: list | None, length: int, heads: int = 1,
                with_tally: bool = True) -> FocusMasks | None:
    """A dialog's focus (records.Sample.focus) -> its FocusMasks (queries, keys, counts, tally: None unless
    `with_tally`), or None. A focus entry
    with no objects points at the picture's SOI vector (the position before its first image vector). A turn whose
    focus names n pictures shares them out among the heads: head h looks at picture h mod n, and picture j is
    always looked at by head j mod heads (with more pictures than heads, a head takes several). One head averaging
    over the objects of two pictures cannot tell which holds more; two heads, each on one, can. Dialogs cut by
    truncation are left out (their answers and pictures no longer line up with the record's)."""
    if not focus or dialog.dropped_turns:
        return None
    grid = math.isqrt(dialog.num_patches)
    queries = torch.zeros(length, dtype=torch.bool)
    keys = torch.zeros(heads, length, length, dtype=torch.bool)
    counts = torch.full((length,), IGNORE, dtype=torch.long)
    tally = torch.zeros(length, length) if with_tally else None
    starts, pos, user, bot, answer = dialog.image_positions(), 0, None, None, 0
    for s in dialog.segments:
        n = s.length(dialog.num_patches)
        if s.kind == "special" and s.name == "USER":
            user = pos
        elif s.kind == "special" and s.name == "BOT":
            bot = pos
        elif s.kind == "text" and s.trained:
            entry = focus[answer] if answer < len(focus) else None
            answer += 1
            entry = [e for e in entry or () if e["image"] < len(starts)]
            if entry and user is not None:
                span = slice(user + 1, pos + n - 1)  # question, BOT, answer (whose last token predicts nothing)
                for j, e in enumerate(entry):
                    soi = starts[e["image"]] - 1
                    cells = focus_cells(e["objects"], grid)
                    where = [soi + 1 + c for c in cells] if cells else [soi]
                    for head in range(heads):
                        if head % len(entry) == j or j % heads == head:
                            keys[head, span, where] = True
                queries[span] = True
                counts[bot:span.stop] = min(len(entry[0]["objects"]), CountProbe.LARGEST)
                if tally is not None:
                    soi = starts[entry[0]["image"]] - 1
                    tally[bot:span.stop, soi] = 1
                    for x, y, _ in entry[0]["objects"]:
                        tally[bot:span.stop, soi + 1 + centre_cell(x, y, grid)] += 1
                    tally[bot:span.stop] /= 1 + len(entry[0]["objects"])
        pos += n
    return FocusMasks(queries, keys, counts, tally) if queries.any() else None


class CountProbe(nn.Linear):
    """Training only: reads, from the LLM's last hidden state at a focused turn's BOT and answer, how many objects
    the focus names in head 0's picture ("How many red shapes?": the red ones; "What colour is the circle?": one),
    as one of 0 .. LARGEST ("LARGEST or more"). The answer has to say that number; the probe's gradient makes the
    hidden state carry it from BOT on, where the two-block LLM otherwise read a named colour's count one too low.
    Thrown away after training: saved beside a checkpoint only so that `--resume` goes on with it."""

    LARGEST = 5
    FILE = "count_probe.safetensors"

    def __init__(self, hidden: int, seed: int = 0):
        with torch.random.fork_rng(devices=[]):  # its init must not shift the run's random stream
            torch.manual_seed(seed)
            super().__init__(hidden, self.LARGEST + 1)

    def save(self, folder: Path) -> None:
        save_file({k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()},
                  str(Path(folder) / self.FILE))

    @classmethod
    def load(cls, folder: Path, hidden: int) -> CountProbe:
        probe = cls(hidden)
        probe.load_state_dict(load_file(str(Path(folder) / cls.FILE)))
        return probe


class Trainee(nn.Module):
    def __init__(self, model: OmniFusion, cached_features: bool, focus_weight: float = 0.0,
                 focus_heads: list[tuple[int, int]] = ((0, 0),), count_probe: CountProbe | None = None,
                 count_weight: float = 0.0, tally_weight: float = 0.0, tally_head: tuple[int, int] = (1, 1)):
        super().__init__()
        self.model = model
        self.cached_features = cached_features  # batches carry CLIP features [n, N, W], not pixels
        self.focus_weight, self.focus_heads = focus_weight, list(focus_heads)
        self.count_probe, self.count_weight = count_probe, count_weight if count_probe is not None else 0.0
        self.tally_weight, self.tally_head = tally_weight, tuple(tally_head)
        layers, heads = model.llm.config.num_hidden_layers, model.llm.config.num_attention_heads
        for name, used in (("focus_heads", self.focus_heads if focus_weight else []),
                           ("tally_head", [self.tally_head] if tally_weight else [])):
            wrong = [f"{a}:{b}" for a, b in used if a >= layers or b >= heads]
            if wrong:
                raise ValueError(f"{name} {', '.join(wrong)}: the LLM has {layers} layers of {heads} heads")

    def extras(self) -> dict[str, nn.Module]:
        """Modules trained beside the model: optimized with it, saved beside its checkpoints, then thrown away."""
        return {} if self.count_probe is None else {"count_probe": self.count_probe}

    def forward(self, batch: MicroBatch, num_items: int | None = None) -> torch.Tensor:
        """-> cross-entropy over the answer tokens of the micro-batch: their mean, or with `num_items` their sum
        divided by it. The loop passes the trained-token count of the whole optimizer step (all micro-batches,
        all processes), so every answer token weighs the same however the step is cut up (HF Trainer's
        `num_items_in_batch`); a 5-token caption then counts 5 tokens' worth, not a micro-batch's."""
        m = self.model
        if not batch.dialogs:
            # Every sample of this micro-batch was dropped. A zero that touches every trained weight keeps
            # processes in step (DDP expects each of them to produce gradients for the same parameters).
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        image_embeds = None
        if batch.images is not None:
            features = batch.images
            if not self.cached_features:
                vision_param = next(m.vision.parameters())
                with torch.no_grad():
                    features = m.vision(features.to(vision_param.dtype))  # [n, N, W]
            image_embeds = m.adapter(features.to(next(m.adapter.parameters()).dtype))  # [n, N, H]
        embeds, labels, used = [], [], 0
        for dialog in batch.dialogs:
            count = len(dialog.image_keys)
            e, lab = m.embed_dialog(dialog, image_embeds[used:used + count] if count else [])  # [T, H], [T]
            used += count
            embeds.append(e)
            labels.append(lab)
        padded = m.pad_batch(embeds, labels, left=False)  # right padding: positions start at 0 in every row
        targets = padded.pop("labels")[:, 1:]  # [B, T-1]: position t predicts token t+1
        # Logits only where a token is trained: the answers are a small part of a dialog (12 of 90 tokens in the
        # demo world's), and the LM head with its softmax over the vocabulary at every other position is work
        # and memory thrown away. Mistral's logits are lm_head(final hidden state), nothing more.
        focus = self._focus(batch, padded["inputs_embeds"].shape[1], padded["inputs_embeds"].device)
        out = m.llm.get_decoder()(**padded, use_cache=False,
                                  output_attentions=focus is not None and bool(self.focus_weight or self.tally_weight))
        hidden = out.last_hidden_state[:, :-1]  # [B, T-1, H]
        trained = targets != IGNORE
        logits = m.llm.get_output_embeddings()(hidden[trained])  # [n, V]
        # fp32 like the model's own loss; a sum over no tokens is 0, never the NaN that a mean over none gives
        loss = F.cross_entropy(logits.float(), targets[trained], reduction="sum")
        share = 1 / (num_items if num_items is not None else batch.trained_tokens)
        loss = loss * share
        if focus is not None and self.focus_weight:
            # -log of the attention mass on the focused vectors, averaged over the focused positions, weighted by
            # the micro-batch's share of the step's answer tokens like the cross-entropy above
            terms = [-torch.log((out.attentions[layer][:, head].float() * focus.keys[:, i]).sum(-1)[focus.queries]
                                + 1e-6).mean() for i, (layer, head) in enumerate(self.focus_heads)]
            loss = loss + self.focus_weight * batch.trained_tokens * share * torch.stack(terms).mean()
        if focus is not None and self.count_weight:
            # the probe's cross-entropy at the focused turns' BOT and answers, weighted the same way
            at = focus.counts != IGNORE
            if at.any():  # a mean over no positions would be NaN
                term = F.cross_entropy(self.count_probe(out.last_hidden_state[at].float()), focus.counts[at])
                loss = loss + self.count_weight * batch.trained_tokens * share * term
        if focus is not None and self.tally_weight:
            # the tally head's cross-entropy against its even share of SOI and the named objects' centres
            at = focus.counts != IGNORE
            if at.any():
                layer, head = self.tally_head
                attention = out.attentions[layer][:, head].float()[at]  # [n, T]
                term = -(focus.tally[at] * torch.log(attention + 1e-6)).sum(-1).mean()
                loss = loss + self.tally_weight * batch.trained_tokens * share * term
        return loss

    def _focus(self, batch: MicroBatch, length: int, device) -> FocusMasks | None:
        """-> the micro-batch's FocusMasks (queries [B, T], keys [B, focused heads, T, T], counts [B, T], tally
        [B, T, T]), or None when neither the focus loss, the count probe nor the tally is on, or nothing is focused."""
        if not (self.focus_weight or self.count_weight or self.tally_weight) or not any(batch.focus):
            return None
        heads = len(self.focus_heads)
        # the tally's [T, T] targets are built only when its loss reads them
        masks = [focus_masks(d, f, length, heads, with_tally=bool(self.tally_weight))
                 for d, f in zip(batch.dialogs, batch.focus, strict=True)]
        if not any(masks):
            return None
        queries = torch.zeros(len(masks), length, dtype=torch.bool)
        keys = torch.zeros(len(masks), heads, length, length, dtype=torch.bool)
        counts = torch.full((len(masks), length), IGNORE, dtype=torch.long)
        tally = torch.zeros(len(masks), length, length) if self.tally_weight else None
        for b, mask in enumerate(masks):
            if mask is not None:
                queries[b], keys[b], counts[b] = mask.queries, mask.keys, mask.counts
                if tally is not None:
                    tally[b] = mask.tally
        return FocusMasks(queries.to(device), keys.to(device), counts.to(device),
                          None if tally is None else tally.to(device))
