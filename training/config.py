"""Training configuration: one dataclass is the YAML schema, the command line and the `--help` text.

The string under each field is its documentation; `--help` prints it. Values are layered
defaults < saved config of `--resume` < YAML `--config` < `--key value`, and every problem is collected and
reported in one message before any model or data is touched.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import json
import textwrap
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

SAVED_CONFIG = "train_config.yaml"  # the resolved config, next to every checkpoint
STATE_FILE = "training_state.pt"  # its presence marks a complete checkpoint
PROGRESS_FILE = "progress.json"  # step, samples seen, data report


class ConfigError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("bad training config:\n" + "\n".join(f"  - {p}" for p in problems))


@dataclass
class TrainConfig:
    # --- what to train -------------------------------------------------------------------------------------
    stage: Literal["vision", "text", 1, 2] = 1
    """1: adapter + SOI/EOI/USER/BOT only (LLM and CLIP frozen); 2: the LLM as well (CLIP stays frozen).
    Pretraining for a model built from scratch (the demo recipe): `vision` trains the vision tower on instance
    masks (training/vision_stage.py), `text` trains the LLM alone on plain text ({"text": ...} records)."""
    init_from: str | None = None
    """Checkpoint folder to start from (ours; convert the release with `python -m model.convert`). Stage 2:
    stage 1's output_dir. Empty: a random in-memory `preset` (tests, smoke runs)."""
    preset: str = "tiny"
    """In-memory model preset used when init_from is empty (tiny or bench)."""
    output_dir: str = "runs/stage1"
    """Checkpoints (step-NNNNNN/), metrics.csv and loss_curve.png go here; the final model is the folder itself."""
    resume: str | None = None
    """Checkpoint folder to continue exactly from, or `latest` (newest complete one in output_dir; a fresh
    start if there is none)."""

    # --- data ----------------------------------------------------------------------------------------------
    data: str = ""
    """Training data: JSONL of captions {"image", "caption"}, or LLaVA JSON (a list of {"id", "image"?,
    "conversations"}), or LLaVA records as JSONL. Records of both kinds may be mixed."""
    image_root: str | None = None
    """Folder that relative image paths start from; empty: the data file's folder. A path that climbs out of it
    with `..` is skipped and counted, so a data file cannot make training read files elsewhere."""
    allow_absolute_images: bool = False
    """Accept absolute image paths in the data and read them where they point (off: skipped and counted)."""
    caption_prompt: str = "Describe the image briefly."
    """User turn put before each caption, so a caption sample looks like a one-turn dialog."""
    max_length: int = 2048
    """Context length in tokens (576 of them per image at the real geometry). Longer dialogs lose their oldest
    turns; a sample whose last turn alone does not fit is dropped and counted."""
    append_eos: bool = True
    """End every answer with EOS, so the model learns to stop (the released model never did)."""
    feature_cache: str | None = None
    """Folder for precomputed CLIP features (fp16 safetensors, keyed by image path): computed once, reused by
    later runs with the same vision encoder. Training then never runs CLIP."""
    cache_batch_size: int = 16
    """Images per CLIP forward while filling the feature cache."""
    group_by_length: bool = True
    """Cut each optimizer step into micro-batches of similar length (less padding; the step's samples and its
    token-weighted loss stay the same)."""
    num_workers: int = 2
    """DataLoader worker processes (image decoding, tokenization); 0 = in the training process."""

    # --- optimisation --------------------------------------------------------------------------------------
    batch_size: int = 256
    """Samples per optimizer step over all processes (micro_batch_size x accumulation x processes)."""
    micro_batch_size: int = 8
    """Samples per forward/backward on one process; gradient accumulation makes up the rest of batch_size."""
    epochs: int = 1
    """Passes over the data (ignored when max_steps is set)."""
    max_steps: int | None = None
    """Optimizer steps of the whole run; the schedule spans exactly these."""
    stop_at: int | None = None
    """Save and exit after this step although the schedule goes on (time-sliced jobs; --resume continues)."""
    optimizer: Literal["adamw", "adafactor"] = "adamw"
    """adamw, or adafactor with a fixed learning rate (the released training's choice; tiny optimizer state)."""
    lr: float = 1e-3
    """Peak learning rate of the adapter and the four special vectors."""
    llm_lr: float = 2e-5
    """Peak learning rate of the LLM (stage 2 only)."""
    weight_decay: float = 0.0
    """Decoupled weight decay on matrices (never on biases, norms or the special vectors)."""
    adam_beta1: float = 0.9
    """AdamW beta1 (Adafactor runs without a first moment, as released)."""
    adam_beta2: float = 0.999
    """AdamW beta2 (Adafactor keeps its own factored second moment)."""
    schedule: Literal["cosine", "constant"] = "cosine"
    """Learning rate after warmup: cosine decay to min_lr_ratio, or constant."""
    warmup_ratio: float = 0.03
    """Fraction of the steps spent warming the learning rate up linearly from 0."""
    min_lr_ratio: float = 0.0
    """Where the cosine ends, as a fraction of the peak."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this; 0 = no clipping."""
    precision: Literal["auto", "native", "bf16", "fp32"] = "auto"
    """Autocast: auto = bf16 on CUDA, fp32 on CPU; native = bf16 where the chip computes in it (CUDA, or a CPU with
    AVX512-BF16 or AMX), else fp32. Trained weights are always kept in fp32."""
    attention: Literal["auto", "eager", "sdpa"] = "auto"
    """The LLM's attention kernel while training: auto = the model's own (sdpa); eager = plain matmul and softmax,
    which a small model in bf16 autocast on a CPU trains faster with (the demo's stage 2: 1.2x; there sdpa's
    backward costs ~8x its forward; in fp32 the two are alike). Serving is not affected."""
    focus_weight: float = 0.0
    """Weight of the attention-focus loss (stage 2): records' "focus" (docs/training.md) trains `focus_heads`, at a
    turn's question and answer, to attend to the objects it is about (else SOI). 0 = off. Needs attention: eager."""
    focus_heads: str = "0:0,1:0"
    """The heads the focus loss trains, as layer:head pairs ("0:0,1:0": head 0 of the first two layers)."""
    count_weight: float = 0.0
    """Weight of the count probe's loss (stage 2): a linear layer on the LLM's last hidden state, thrown away after
    training, learns at each focused turn's BOT and answer how many objects the focus names (trainee.CountProbe)."""
    tally_weight: float = 0.0
    """Weight of the tally loss (stage 2, attention: eager): `tally_head` learns to count what is named. 0 = off."""
    tally_head: str = "1:1"
    """The head the tally loss trains, as layer:head."""
    frozen_dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """dtype of frozen weights (CLIP; the LLM in stage 1): auto = bf16 on CUDA (fp32 under FSDP), else fp32."""
    gradient_checkpointing: bool = True
    """Recompute the LLM's activations in backward: much less memory for about a third more compute."""
    seed: int = 42
    """Seeds initialisation, dropout and the data order (each epoch's shuffle is derived from seed + epoch)."""

    # --- bookkeeping ---------------------------------------------------------------------------------------
    log_every: int = 10
    """Write a metrics row every this many steps."""
    save_every: int = 1000
    """Checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: int = 3
    """Keep the newest this many step-NNNNNN/ folders; 0 keeps all."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True))


def _field_docs(cls) -> dict[str, str]:
    """The string literal under each field, read from the source: what `--help` shows."""
    docs, body = {}, ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0].body
    for node, following in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr) \
                and isinstance(following.value, ast.Constant) and isinstance(following.value.value, str):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
HINTS = typing.get_type_hints(TrainConfig)
DOCS = _field_docs(TrainConfig)
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def _coerce(name: str, value):
    """Turn a YAML or command-line value into the field's type; raise ValueError with a short reason."""
    hint = HINTS[name]
    args = typing.get_args(hint)
    if type(None) in args:  # Optional
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "null", "none")):
            return None
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        for c in choices:
            if value == c or str(value).strip() == str(c):
                return c
        raise ValueError(f"must be one of {', '.join(map(str, choices))}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in _TRUE | _FALSE:
            return str(value).strip().lower() in _TRUE
        raise ValueError("must be true or false")
    if hint is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError("must be an integer")
        try:
            return int(value) if not isinstance(value, str) else int(value.strip().replace("_", ""))
        except ValueError:
            raise ValueError("must be an integer") from None
    if hint is float:
        if isinstance(value, bool):
            raise ValueError("must be a number")
        try:
            return float(value)  # also "1e-3", which YAML 1.1 reads as a string
        except (TypeError, ValueError):
            raise ValueError("must be a number") from None
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError("must be a string")
    return str(value)


def focus_heads(text: str, name: str = "focus_heads", one: bool = False) -> list[tuple[int, int]]:
    """"0:0,1:2" -> [(0, 0), (1, 2)]; ValueError naming `name` unless layer:head pairs (with `one`: exactly one)."""
    try:
        pairs = [tuple(int(x) for x in part.split(":")) for part in text.split(",") if part.strip()]
    except ValueError:
        pairs = []
    if not pairs or any(len(p) != 2 or min(p) < 0 for p in pairs) or (one and len(pairs) > 1):
        wanted = "one layer:head pair such as 1:1" if one else "layer:head pairs such as 0:0,1:0"
        raise ValueError(f"{name}: must be {wanted}, got {text!r}")
    return pairs


def _check_values(c: TrainConfig) -> list[str]:
    p = []
    for weight, heads in (("focus_weight", "focus_heads"), ("tally_weight", "tally_head")):
        try:
            focus_heads(getattr(c, heads), heads, one=heads == "tally_head")
        except ValueError as exc:
            p.append(str(exc))
        if getattr(c, weight) > 0 and c.attention != "eager":
            p.append(f"{weight}: its loss reads the heads' attention weights, which only attention: eager gives; "
                     f"got attention: {c.attention}")
    positive = ("max_length", "cache_batch_size", "batch_size", "micro_batch_size", "epochs", "log_every",
                "save_every", "max_steps", "stop_at")
    p += [f"{k}: must be >= 1, got {getattr(c, k)}" for k in positive
          if getattr(c, k) is not None and getattr(c, k) < 1]
    p += [f"{k}: must be >= 0, got {getattr(c, k)}" for k in ("num_workers", "keep_checkpoints", "weight_decay",
                                                             "max_grad_norm", "focus_weight", "count_weight",
                                                             "tally_weight") if getattr(c, k) < 0]
    p += [f"{k}: must be > 0, got {getattr(c, k)}" for k in ("lr", "llm_lr") if not getattr(c, k) > 0]
    p += [f"{k}: must be in [0, 1), got {getattr(c, k)}" for k in ("adam_beta1", "adam_beta2", "warmup_ratio")
          if not 0 <= getattr(c, k) < 1]
    if not 0 <= c.min_lr_ratio <= 1:
        p.append(f"min_lr_ratio: must be in [0, 1], got {c.min_lr_ratio}")
    if c.micro_batch_size >= 1 and c.batch_size % c.micro_batch_size:
        p.append(f"batch_size {c.batch_size} must be a multiple of micro_batch_size {c.micro_batch_size}")
    if not c.data:
        p.append("data: required (a captions JSONL or a LLaVA JSON file)")
    elif not Path(c.data).is_file():
        p.append(f"data: no such file {c.data}")
    if c.image_root and not Path(c.image_root).is_dir():
        p.append(f"image_root: no such folder {c.image_root}")
    if c.init_from and not (Path(c.init_from) / "config.json").is_file():
        p.append(f"init_from: {c.init_from} is not a checkpoint folder (no config.json)")
    if c.feature_cache and c.stage in ("vision", "text"):
        p.append(f"feature_cache: the {c.stage} stage has no frozen vision features to cache; leave it empty")
    if c.stage == 2 and not c.init_from:
        p.append("init_from: stage 2 starts from a trained checkpoint (stage 1's output_dir)")
    if not c.init_from and c.preset not in ("tiny", "bench"):
        p.append(f"preset: {c.preset!r} is not an in-memory preset (tiny, bench); set init_from instead")
    if c.resume and c.resume != "latest" and not (Path(c.resume) / STATE_FILE).is_file():
        p.append(f"resume: {c.resume} is not a complete checkpoint (no {STATE_FILE})")
    if not c.output_dir:
        p.append("output_dir: required")
    return p


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """Newest complete checkpoint in output_dir (the final model counts too), by step."""
    candidates = [d for d in [Path(output_dir), *Path(output_dir).glob("step-*")] if (d / STATE_FILE).is_file()]
    steps = {d: json.loads((d / PROGRESS_FILE).read_text())["step"] for d in candidates}
    return max(steps, key=steps.get, default=None)


def build_config(values: dict, base: dict | None = None) -> TrainConfig:
    """Layered values -> a checked TrainConfig, or ConfigError listing every problem."""
    problems, merged, failed = [], {k: v for k, v in (base or {}).items() if k in FIELDS}, set()
    for key, value in values.items():
        if key not in FIELDS:
            close = difflib.get_close_matches(key, FIELDS, n=1)
            problems.append(f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            continue
        try:
            merged[key] = _coerce(key, value)
        except ValueError as exc:
            problems.append(f"{key}: {exc}, got {value!r}")
            failed.add(key)
            merged.pop(key, None)
    cfg = TrainConfig(**merged)
    # A value that did not parse is checked no further: its stand-in default would only add noise.
    problems += [p for p in _check_values(cfg) if p.split(":")[0].split()[0] not in failed]
    if problems:
        raise ConfigError(problems)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python training/run.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train OmniFusion (stage 1 or 2). Every option is also a YAML key of --config; "
                    "options given here override the YAML.",
        epilog="Example: python training/run.py --config training/configs/stage1.yaml --data captions.jsonl")
    parser.add_argument("--config", help="YAML file with any of the keys below")
    for name, f in FIELDS.items():
        default = f.default if f.default is not None else "none"
        parser.add_argument(f"--{name}", *([f"--{name.replace('_', '-')}"] if "_" in name else []),
                            dest=name, default=argparse.SUPPRESS, metavar=_metavar(HINTS[name]),
                            help=f"{DOCS.get(name, '')} (default: {default})")
    return parser


def _metavar(hint) -> str:
    if typing.get_origin(hint) is Literal:
        return "{" + ",".join(map(str, typing.get_args(hint))) + "}"
    inner = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]  # X | None -> X
    return getattr(inner[0], "__name__", "VALUE").upper()


def parse_args(argv: list[str] | None = None) -> TrainConfig:
    """Command line (+ YAML, + saved config when resuming) -> TrainConfig; ConfigError lists all problems."""
    args, unknown = build_parser().parse_known_args(argv)
    given = {k: v for k, v in vars(args).items() if k != "config"}
    problems = []
    for token in unknown:
        if token.startswith("--"):
            key = token[2:].split("=", 1)[0].replace("-", "_")
            close = difflib.get_close_matches(key, FIELDS, n=1)
            problems.append(f"unknown option --{key}" + (f" (did you mean --{close[0]}?)" if close else ""))
    from_yaml: dict = {}
    if args.config:
        try:
            from_yaml = yaml.safe_load(Path(args.config).read_text()) or {}
            if not isinstance(from_yaml, dict):
                problems.append(f"--config {args.config}: must be a mapping of key: value")
                from_yaml = {}
        except (OSError, yaml.YAMLError) as exc:
            problems.append(f"--config {args.config}: {exc}")
    values = {**from_yaml, **given}
    base = None
    resume = values.get("resume")
    if resume == "latest":
        found = latest_checkpoint(values.get("output_dir", TrainConfig.output_dir))
        values["resume"] = str(found) if found else None
    if values.get("resume") and (Path(values["resume"]) / SAVED_CONFIG).is_file():
        # The interrupted run's settings carry over, except those that only concerned its own invocation.
        base = yaml.safe_load((Path(values["resume"]) / SAVED_CONFIG).read_text())
        base = {k: v for k, v in base.items() if k not in ("resume", "stop_at")}
    try:
        cfg = build_config(values, base)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return cfg
