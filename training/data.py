"""Samples (training/records.py) -> encoded dialogs with images, ready to batch. What shows only here (images
that do not decode, dialogs longer than the context, samples left without a trained token) is counted as batches
are built, into the same `DataReport` as what reading skipped.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import torch
from torch.utils.data import Dataset

from model.config import OmniFusionConfig
from model.dialog import IGNORE, DialogTooLong, EncodedDialog, encode_dialog
from model.images import ImageError, load_image
from model.vision import clip_pixels
from training.records import DataReport, Sample

log = logging.getLogger(__name__)


def reframe(dialog: EncodedDialog, markers: str | None) -> EncodedDialog:
    """The dialog with every image's SOI and EOI swapped ("swapped") or left out ("none"); labels follow the
    segments, so the answers stay trained exactly as before."""
    if markers is None:
        return dialog
    swap = {"SOI": "EOI", "EOI": "SOI"}
    segments = []
    for s in dialog.segments:
        if s.kind == "special" and s.name in swap:
            if markers == "none":
                continue
            s = replace(s, name=swap[s.name])
        segments.append(s)
    return replace(dialog, segments=segments)


# --- turning samples into tensors ----------------------------------------------------------------------------

class ClipPreprocess:
    """model.vision.preprocess for one image, without holding the vision tower, so DataLoader workers need not
    receive a copy of CLIP. tests/test_training_data.py checks both give identical pixels."""

    def __init__(self, cfg: OmniFusionConfig):
        self.size, self.max_aspect = cfg.vision_image_size, cfg.vision_max_aspect

    def __call__(self, image) -> torch.Tensor:  # [3, S, S]
        return clip_pixels(image, self.size, self.max_aspect)


def trained_tokens(dialog: EncodedDialog) -> int:
    """Answer tokens the loss counts: a label at position 0 has no prediction before it (labels are shifted)."""
    return sum(1 for label in dialog.labels()[1:] if label != IGNORE)


def read_image(path: Path):
    """RGB PIL image, or None if the file is gone or does not decode."""
    try:
        return load_image(path.read_bytes())
    except (OSError, ImageError) as exc:
        log.debug("unreadable image %s: %s", path, exc)
        return None


class DialogDataset(Dataset):
    """Sample i -> {"dialog": EncodedDialog, "images": [per image: pixels [3, S, S] or cached features [N, W]]},
    or the skip reason as a string (the collate function counts it)."""

    def __init__(self, samples: list[Sample], tokenizer, model_cfg: OmniFusionConfig, max_length: int,
                 image_root: Path, features=None):
        self.samples, self.tokenizer, self.cfg = samples, tokenizer, model_cfg
        self.max_length, self.root, self.features = max_length, image_root, features
        self.preprocess = ClipPreprocess(model_cfg)

    def __len__(self) -> int:
        return len(self.samples)

    def approximate_lengths(self) -> list[int]:
        """Sequence length of each sample, roughly (a token per 3 characters), without tokenizing: what the
        sampler groups micro-batches by."""
        return [len(s.images) * self.cfg.vision_num_patches
                + sum(len(p["text"]) for m in s.messages for p in m["content"] if p["type"] == "text") // 3
                for s in self.samples]

    def __getitem__(self, i: int) -> dict | str:
        try:
            dialog = encode_dialog(self.samples[i].messages, self.tokenizer, self.cfg, max_tokens=self.max_length)
        except DialogTooLong:
            return "too_long"
        dialog = reframe(dialog, self.samples[i].image_markers)
        if not trained_tokens(dialog):  # e.g. truncation kept only a turn whose answer is empty
            return "no_trained_tokens"
        images = []
        for key in dialog.image_keys:
            if self.features is not None:
                image = self.features.get(key)  # [N, W] fp16
            else:
                pil = read_image(self.root / key)
                image = None if pil is None else self.preprocess(pil)  # [3, S, S]
            if image is None:
                return "unreadable_image"
            images.append(image)
        # A broken frame moves or drops the SOI a focus may point at: such dialogs train without one.
        focus = None if self.samples[i].image_markers else self.samples[i].focus
        return {"dialog": dialog, "images": images, "focus": focus}


class MicroBatch:
    """Deliberately not a dataclass, list or dict: DDP would rebuild those field by field while moving them to
    the device, and the encoded dialogs are plain Python that must pass through untouched."""

    def __init__(self, dialogs: list, images: torch.Tensor | None, report, focus: list | None = None):
        self.dialogs, self.images, self.report = dialogs, images, report  # images: pixels or cached features
        self.focus = focus or [None] * len(dialogs)  # per dialog: its Sample.focus
        self.trained_tokens = sum(trained_tokens(d) for d in dialogs)  # what the loss is averaged over
        self.tokens = sum(len(d) for d in dialogs)  # the sequence length the LLM runs over

    def __len__(self) -> int:
        return len(self.dialogs)

    def to(self, device: torch.device) -> MicroBatch:
        images = None if self.images is None else self.images.to(device, non_blocking=True)
        return MicroBatch(self.dialogs, images, self.report, self.focus)


def collate(items: list[dict | str]) -> MicroBatch:
    """Usable samples -> one micro-batch; dropped ones only leave their reason in the batch's report."""
    report = DataReport()
    report.skipped.update(i for i in items if isinstance(i, str))
    kept = [i for i in items if not isinstance(i, str)]
    report.truncated = sum(1 for i in kept if i["dialog"].dropped_turns)
    images = [img for i in kept for img in i["images"]]
    # [n_images, 3, S, S] pixels, or [n_images, N, W] cached features
    return MicroBatch([i["dialog"] for i in kept], torch.stack(images) if images else None, report,
                      [i.get("focus") for i in kept])
