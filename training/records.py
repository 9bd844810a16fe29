"""Training data as people have it -> the protocol's messages (`Sample`), with a report of what was skipped.

Three record kinds, mixed freely in one file (a JSON list, or JSONL with one record per line):
    caption:  {"image": "rel/path.jpg", "caption": "..."}                         (stage 1)
    LLaVA:    {"id", "image"?, "conversations": [{"from": "human", "value": "<image>\\n..."}, ...]}
    text:     {"text": "..."}: plain text, every token trained, no prompt (the text stage)

Nothing about bad records is fatal (only a file that is not JSON or UTF-8 at all is). What can be checked up
front (JSON, structure, image paths inside the image root, image files present) is counted while reading; what
shows only later (undecodable images, dialogs longer than the context, samples left without a trained token)
is counted as batches are built (training/data.py). Both end up in one `DataReport`.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

IMAGE_TAG = "<image>"
# ShareGPT-derived sets (LLaVA's, Vicuna's) name the assistant after the chatbot a dialog was taken from.
ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "bot": "assistant",
         "model": "assistant", "chatgpt": "assistant", "bing": "assistant", "bard": "assistant",
         "system": "system"}

# Skip reasons, in the order the report prints them.
REASONS = {
    "broken_json": "lines that are not valid JSON",
    "bad_record": "records that are neither a caption nor a conversation",
    "bad_conversations": "'conversations' that are not a list of turns",
    "empty_conversation": "empty conversations",
    "no_answer": "conversations without an assistant answer",
    "unknown_role": "turns with an unknown 'from'",
    "bad_focus": "records whose 'focus' does not fit their answers and images",
    "outside_root": "image paths outside image_root",
    "missing_image": "image files that do not exist",
    "unreadable_image": "images that could not be decoded",
    "too_long": "samples whose last turn alone exceeds max_length",
    "no_trained_tokens": "samples left without an answer token to train on",
}


@dataclass
class DataReport:
    total: int = 0  # records read
    skipped: Counter = field(default_factory=Counter)  # reason -> samples dropped
    truncated: int = 0  # samples kept with their oldest turns dropped (counted each time they are batched)

    def add(self, other: DataReport) -> None:
        self.total += other.total
        self.skipped.update(other.skipped)
        self.truncated += other.truncated

    def to_dict(self) -> dict:
        return {"total": self.total, "skipped": dict(self.skipped), "truncated": self.truncated}

    @classmethod
    def from_dict(cls, d: dict) -> DataReport:
        return cls(d["total"], Counter(d["skipped"]), d["truncated"])

    def summary(self) -> str:
        order = {reason: i for i, reason in enumerate(REASONS)}
        counts = sorted(self.skipped.items(), key=lambda kv: order.get(kv[0], len(order)))
        parts = [f"{n} {REASONS.get(r, r)}" for r, n in counts if n]
        text = f"{self.total} records, skipped {sum(self.skipped.values())}"
        text += (": " + "; ".join(parts)) if parts else ""
        return text + (f"; {self.truncated} truncated to fit (oldest turns dropped)" if self.truncated else "")


@dataclass
class Sample:
    messages: list[dict]  # the protocol's format; an image part's "key" is the image's path under image_root
    images: list[str]
    image_markers: str | None = None  # None: SOI image EOI, as always; or one of FRAMES (a broken frame)
    # Per assistant message: where its question's answer lies in the pictures (docs/training.md, Data;
    # training/demo_world/focus.py): None, or [{"image": k, "objects": [[x, y, r], ...]}, ...]; the focus loss
    # reads it.
    focus: list | None = None


# A record's "image_markers": its pictures' SOI/EOI frame broken on purpose, for a model that should learn that a
# picture is what stands between SOI and EOI and nothing else (the demo world's "unframed" dialogs are answered
# as if no picture came, so a pipeline that misplaces the markers shows up in the demo eval).
FRAMES = ("swapped", "none")


# --- reading records ------------------------------------------------------------------------------------------

def read_records(path: Path, report: DataReport) -> list:
    """A JSON list, or JSONL where a broken line is counted and skipped. A byte-order mark is allowed (editors
    on Windows write one); a file that is not UTF-8, or a JSON list that does not parse, stops with its name."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    if text.lstrip().startswith("["):
        try:
            records = json.loads(text)  # one document: if it is broken there is nothing to salvage line by line
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
        report.total += len(records)
        return records
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        report.total += 1
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:
            if not report.skipped["broken_json"]:  # the first one tells people where to look; the count says the rest
                log.warning("%s: line %d is not valid JSON (%s)", path, number, exc.msg)
            report.skipped["broken_json"] += 1
    return records


def _part_image(key: str) -> dict:
    return {"type": "image", "key": key}


def _part_text(text: str) -> dict:
    return {"type": "text", "text": text}


def caption_sample(record: dict, caption_prompt: str) -> Sample | str:
    image, caption = record.get("image"), record.get("caption")
    if not isinstance(image, str) or not image or not isinstance(caption, str) or not caption.strip():
        return "bad_record"
    user = [_part_image(image)] + ([_part_text(caption_prompt)] if caption_prompt else [])
    return Sample([{"role": "user", "content": user},
                   {"role": "assistant", "content": [_part_text(caption.strip())]}], [image])


def text_sample(record: dict) -> Sample | str:
    """Plain text as a dialog of one assistant message under an empty system prompt: encode_dialog then trains
    every token of it (and the EOS after it), with neither the prompt text nor USER/BOT around it."""
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        return "bad_record"
    return Sample([{"role": "system", "content": [_part_text("")]},
                   {"role": "assistant", "content": [_part_text(text.strip())]}], [])


def _turns(record: dict) -> list | str:
    """The record's turns, or why there are none. Some exporters store the list as a JSON string."""
    turns = record.get("conversations")
    if isinstance(turns, str) and turns.strip():
        try:
            turns = json.loads(turns)
        except json.JSONDecodeError:
            return "bad_conversations"
    if not turns:
        return "empty_conversation"
    return turns if isinstance(turns, list) else "bad_conversations"


def llava_sample(record: dict) -> Sample | str:
    """LLaVA conversations -> messages. The k-th `<image>` tag puts the k-th image into that turn (our layout
    places it before the turn's USER vector); images without a tag go to the first user turn, as released.
    A top-level "system" text replaces the default prompt. Like LLaVA, a dialog starts with the user: leading
    assistant turns are dropped. Trailing user turns are dropped too: nothing after the last answer changes
    the loss (the LLM is causal), and kept they would be what truncation saves instead of that answer."""
    turns = _turns(record)
    if isinstance(turns, str):
        return turns
    images = record.get("image") or []
    images = [images] if isinstance(images, str) else images
    system, markers = record.get("system"), record.get("image_markers")
    if not isinstance(images, list) or not all(isinstance(i, str) and i for i in images) \
            or not isinstance(system, str | None) or not (markers is None or markers in FRAMES):
        return "bad_record"
    focus = record.get("focus")
    if focus is not None and not _focus_fits(focus, turns, len(images)):
        return "bad_focus"
    messages, pending, answers, kept_focus = [], list(images), 0, []
    if system and system.strip():
        messages.append({"role": "system", "content": [_part_text(system.strip())]})
    for turn in turns:
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            return "bad_record"
        role = ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            return "unknown_role"
        if role == "assistant":
            answers += 1
            if not any(m["role"] == "user" for m in messages):
                continue
            kept_focus.append(focus[answers - 1] if focus is not None else None)
        value = turn["value"]
        tagged = [pending.pop(0) for _ in range(min(value.count(IMAGE_TAG), len(pending)))] if role == "user" else []
        text = value.replace(IMAGE_TAG, "").strip()
        messages.append({"role": role, "content": [_part_image(k) for k in tagged] + [_part_text(text)]})
    if pending:
        first_user = next((m for m in messages if m["role"] == "user"), None)
        if first_user is None:
            return "bad_record"
        first_user["content"][:0] = [_part_image(k) for k in pending]
    while messages and messages[-1]["role"] == "user":
        messages.pop()
    if not any(m["role"] == "assistant" and m["content"][-1]["text"] for m in messages):
        return "no_answer"
    kept = [p["key"] for m in messages for p in m["content"] if p["type"] == "image"]
    if kept != images:  # a focus names pictures by their place in the record's list
        kept_focus = []
    return Sample(messages, kept, markers, kept_focus if any(f for f in kept_focus) else None)


def _focus_fits(focus, turns: list, images: int) -> bool:
    """One entry per assistant turn, each null or a list of {"image": index, "objects": [[x, y, r], ...]}."""
    answers = sum(1 for t in turns if isinstance(t, dict) and ROLES.get(str(t.get("from", "")).lower()) == "assistant")

    def number(v):
        return isinstance(v, int | float) and not isinstance(v, bool)

    def entry_fits(e):
        return isinstance(e, dict) and isinstance(e.get("image"), int) and not isinstance(e["image"], bool) \
            and 0 <= e["image"] < images and isinstance(e.get("objects"), list) \
            and all(isinstance(o, list) and len(o) == 3 and all(map(number, o)) for o in e["objects"])

    return isinstance(focus, list) and len(focus) == answers and all(
        f is None or (isinstance(f, list) and all(map(entry_fits, f))) for f in focus)


def outside_root(key: str, allow_absolute: bool) -> bool:
    """Whether an image path from the data leaves the image root: absolute (unless allowed) or climbing out
    with `..`. Judged on the text alone, before the file system is asked anything, so the skip report never
    tells which outside files exist. Symlinks inside the root are followed: whoever put them there chose to."""
    if os.path.isabs(key):
        return not allow_absolute
    return os.path.normpath(key).split(os.sep)[0] == os.pardir


def load_samples(path: str | Path, image_root: str | Path | None, caption_prompt: str, check_files: bool = True,
                 allow_absolute_images: bool = False) -> tuple[list[Sample], DataReport, Path]:
    """-> (usable samples, report of what was skipped, the image root)."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    report = DataReport()
    samples: list[Sample] = []
    for record in read_records(path, report):
        if not isinstance(record, dict):
            sample = "bad_record"
        elif "conversations" in record:
            sample = llava_sample(record)
        elif "caption" in record:
            sample = caption_sample(record, caption_prompt)
        elif "text" in record:
            sample = text_sample(record)
        else:
            sample = "bad_record"
        if isinstance(sample, Sample):
            if any(outside_root(i, allow_absolute_images) for i in sample.images):
                sample = "outside_root"
            elif check_files and not all((root / i).is_file() for i in sample.images):
                sample = "missing_image"
        if isinstance(sample, str):
            report.skipped[sample] += 1
        else:
            samples.append(sample)
    return samples, report, root
