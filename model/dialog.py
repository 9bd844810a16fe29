"""Dialog (the protocol's messages) -> a flat list of segments the model embeds. See docs/model.md.

Released layout for one image before the first turn, reproduced exactly:

    embed(prompt) SOI <image> EOI USER embed(question) BOT [embed(answer) USER embed(question) BOT ...]

Images of later user turns go in the same place relative to their turn: `SOI <image> EOI` right before that
turn's USER vector. Every text piece is tokenized on its own, without BOS, like the release. Labels are built
here, per segment: only assistant answers are trained, so a label can never drift onto a prompt token.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import PreTrainedTokenizerBase

from model.config import OmniFusionConfig
from model.tokenizer import encode_segment

IGNORE = -100
SPECIALS = ("SOI", "EOI", "USER", "BOT")


@dataclass
class Segment:
    kind: Literal["text", "special", "image"]
    ids: list[int] = field(default_factory=list)  # text: token ids
    name: str = ""  # special: one of SPECIALS
    image: int = -1  # image: index into the dialog's image list
    trained: bool = False  # text of assistant answers: the loss counts these tokens

    def length(self, num_patches: int) -> int:
        return len(self.ids) if self.kind == "text" else (num_patches if self.kind == "image" else 1)


@dataclass
class EncodedDialog:
    segments: list[Segment]
    image_keys: list[str]  # what each image index refers to (the protocol's image keys, or any label)
    num_patches: int
    dropped_turns: int = 0

    def __len__(self) -> int:
        return sum(s.length(self.num_patches) for s in self.segments)

    def labels(self) -> list[int]:
        out: list[int] = []
        for s in self.segments:
            n = s.length(self.num_patches)
            out.extend(s.ids if s.trained else [IGNORE] * n)
        return out

    def image_positions(self) -> list[int]:
        """Offset of each image's first patch vector in the sequence."""
        pos, out = 0, []
        for s in self.segments:
            if s.kind == "image":
                out.append(pos)
            pos += s.length(self.num_patches)
        return out


class DialogTooLong(ValueError):
    """The current turn alone does not fit the token budget."""


def _text(message: dict) -> str:
    return "\n".join(p["text"] for p in message["content"] if p["type"] == "text").strip()


def _images(message: dict) -> list[str]:
    return [p["key"] for p in message["content"] if p["type"] == "image"]


def _group_turns(messages: list[dict]) -> tuple[str | None, list[list[dict]]]:
    """-> (system text, turns); a turn is one user message and the assistant messages that follow it."""
    system, turns = None, []
    for m in messages:
        if m["role"] == "system":
            system = _text(m)
        elif m["role"] == "user" or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    return system, turns


def encode_dialog(messages: list[dict], tokenizer: PreTrainedTokenizerBase, cfg: OmniFusionConfig,
                  max_tokens: int | None = None, max_images: int | None = None) -> EncodedDialog:
    """Build segments. With `max_tokens`, the oldest turns are dropped until the dialog fits, never the last
    one; the newest image of a dropped turn moves into the last turn when that turn has none, so a follow-up
    question about an earlier photo still sees the photo. Raises DialogTooLong if the last turn cannot fit."""
    system, turns = _group_turns(messages)
    prompt_ids = encode_segment(tokenizer, cfg.prompt_text if system is None else system)
    encoded_turns = [_encode_turn(t, tokenizer, cfg) for t in turns]
    dropped, carried = 0, None
    budget_images = max_images if max_images is not None else 10**9

    def cost(turn_list, carry):
        extra = (cfg.vision_num_patches + 2) if carry else 0
        return len(prompt_ids) + extra + sum(c for _, _, c in turn_list)

    def n_images(turn_list, carry):
        return sum(len(k) for _, k, _ in turn_list) + (1 if carry else 0)

    while len(encoded_turns) > 1 and (
            (max_tokens is not None and cost(encoded_turns, carried) > max_tokens)
            or n_images(encoded_turns, carried) > budget_images):
        _, keys, _ = encoded_turns.pop(0)
        dropped += 1
        if keys and not encoded_turns[-1][1]:
            carried = keys[-1]
    if carried is not None and (encoded_turns[-1][1] or n_images(encoded_turns, None) + 1 > budget_images):
        carried = None
    if max_tokens is not None and cost(encoded_turns, carried) > max_tokens:
        raise DialogTooLong(f"the current turn needs {cost(encoded_turns, carried)} tokens, the limit is {max_tokens}")
    if n_images(encoded_turns, carried) > budget_images:
        raise DialogTooLong(f"the current turn has more than {budget_images} images")

    segments = [Segment("text", ids=prompt_ids)] if prompt_ids else []
    image_keys: list[str] = []
    for i, (turn_segments, keys, _) in enumerate(encoded_turns):
        if carried is not None and i == len(encoded_turns) - 1:
            keys = [carried]
            turn_segments = _image_segments(1) + turn_segments
        for s in turn_segments:
            if s.kind == "image":
                s = Segment("image", image=len(image_keys) + s.image)
            segments.append(s)
        image_keys.extend(keys)
    return EncodedDialog(segments, image_keys, cfg.vision_num_patches, dropped)


def _image_segments(count: int) -> list[Segment]:
    out = []
    for i in range(count):
        out += [Segment("special", name="SOI"), Segment("image", image=i), Segment("special", name="EOI")]
    return out


def _encode_turn(turn: list[dict], tokenizer, cfg) -> tuple[list[Segment], list[str], int]:
    """-> (segments with image indices local to the turn, image keys, token cost)."""
    first, answers = turn[0], turn[1:]
    keys = _images(first) if first["role"] == "user" else []
    segments = _image_segments(len(keys))
    if first["role"] == "user":
        segments += [Segment("special", name="USER"), Segment("text", ids=encode_segment(tokenizer, _text(first))),
                     Segment("special", name="BOT")]
    else:  # a dialog that starts with the assistant: its words follow the prompt as plain context
        answers = turn
    for a in answers:
        ids = encode_segment(tokenizer, _text(a))
        if cfg.prompt_append_eos and tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        segments.append(Segment("text", ids=ids, trained=True))
    segments = [s for s in segments if s.kind != "text" or s.ids]
    return segments, keys, sum(s.length(cfg.vision_num_patches) for s in segments)
