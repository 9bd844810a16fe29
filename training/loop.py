"""The training loop: one for every stage and for every engine `accelerate launch` offers (a single process,
DDP, FSDP). The stages differ only in their config (training/configs/*.yaml): what is trained, on what data.
The vision stage brings its own dataset and forward (training/vision_stage.py); the loop is the same.

Each optimizer step is the same boring sequence on purpose:
    forward -> loss -> backward (x accumulation) -> clip -> step -> schedule -> log -> save
"""

from __future__ import annotations

import logging
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.utils import DistributedType, set_seed
from safetensors.torch import load_file
from torch.utils.data import DataLoader
from tqdm import tqdm

from model.checkpoint import build_in_memory
from model.config import preset_config
from model.omnifusion import OmniFusion
from model.weights import ADAPTER_FILE, load_adapter_state
from training.checkpointing import load_training_state, prune_checkpoints, save_checkpoint
from training.config import SAVED_CONFIG, TrainConfig, focus_heads
from training.data import DialogDataset, collate
from training.distributed import check_launch, global_report, global_sums, make_accelerator
from training.feature_store import fill_cache
from training.optim import build_optimizer, build_scheduler
from training.records import DataReport, load_samples
from training.sampler import StepBatches
from training.trainee import CountProbe, Trainee, freeze_for_stage
from training.training_log import StepMeter, TrainingLog
from training.vision_stage import (
    HEADS_FILE,
    VisionDataset,
    VisionHeads,
    VisionTrainee,
    collate_vision,
    load_vision_records,
)

log = logging.getLogger(__name__)

# Settings that do not change what is computed: they may differ between a run and its resumption.
BOOKKEEPING = {"resume", "stop_at", "output_dir", "log_every", "save_every", "keep_checkpoints", "num_workers",
               "cache_batch_size"}


@dataclass
class TrainResult:
    output_dir: Path
    checkpoint: Path  # the folder written last
    step: int
    losses: list[float]  # per optimizer step: the mean over every answer token of the step, all processes
    samples_per_s: float  # from the second step on (the first one pays for warm-up)
    report: DataReport
    main_process: bool  # the one process that speaks for the run


def _frozen_dtype(cfg: TrainConfig, accelerator: Accelerator) -> torch.dtype:
    if cfg.frozen_dtype == "auto":
        # FSDP wants one dtype per sharded group, so frozen weights stay fp32 next to trained ones there.
        cuda = accelerator.device.type == "cuda" and accelerator.distributed_type != DistributedType.FSDP
        return torch.bfloat16 if cuda else torch.float32
    return torch.bfloat16 if cfg.frozen_dtype == "bf16" else torch.float32


def prepare_model(cfg: TrainConfig, accelerator: Accelerator, model=None):
    """Load (or take) the model, freeze it for the stage, put every part in its dtype and on the device."""
    frozen = _frozen_dtype(cfg, accelerator)
    source = (cfg.resume or cfg.init_from) if model is None else None
    if source:
        # Stage 1 never trains the LLM: load it straight in its frozen dtype (7B: 14 GB instead of 28).
        llm_frozen = cfg.stage in (1, "vision")
        model = OmniFusion.from_pretrained(source, device="cpu", dtype=frozen if llm_frozen else torch.float32)
    elif model is None:
        model = build_in_memory(preset_config(cfg.preset).replace(seed=cfg.seed), device="cpu", dtype=torch.float32)
    if cfg.attention != "auto":
        model.llm.set_attn_implementation(cfg.attention)
    parts = freeze_for_stage(model, cfg.stage, cfg.gradient_checkpointing)
    model.vision.to(frozen)
    if cfg.stage in (1, "vision"):
        model.llm.to(frozen)
    for part in parts:
        getattr(model, part).float()  # trained weights live in fp32; autocast does the bf16 arithmetic
    if source:
        # from_pretrained cast the adapter and vectors to the LLM's dtype; a bf16 round trip would make a
        # resumed stage 1 differ from the uninterrupted one, so read them again at full precision.
        load_adapter_state(model, load_file(str(Path(source) / ADAPTER_FILE)), source)
    # encode_dialog reads this; saved with every checkpoint, it also tells users the model learned to stop.
    model.config = model.config.replace(prompt_append_eos=cfg.append_eos)
    return model.to(accelerator.device), parts


def _warn_changed(cfg: TrainConfig) -> None:
    saved = yaml.safe_load((Path(cfg.resume) / SAVED_CONFIG).read_text())
    changed = sorted(k for k, v in cfg.to_dict().items() if k not in BOOKKEEPING and saved.get(k) != v)
    if changed:
        log.warning("resuming with changed settings (%s): the run will not replay exactly", ", ".join(changed))


def _load_data(cfg: TrainConfig, model, accelerator) -> tuple[DialogDataset, DataReport]:
    """Read and check the data, fill the feature cache if asked; -> (dataset, what was skipped up front)."""
    samples, upfront, image_root = load_samples(cfg.data, cfg.image_root, cfg.caption_prompt,
                                                allow_absolute_images=cfg.allow_absolute_images)
    features = None
    if cfg.feature_cache:
        features = fill_cache(cfg.feature_cache, [i for s in samples for i in s.images], image_root, model,
                              accelerator, cfg.cache_batch_size)
        usable = [s for s in samples if not any(i in features.failed for i in s.images)]
        upfront.skipped["unreadable_image"] += len(samples) - len(usable)
        samples = usable
    if accelerator.is_main_process:
        log.info("data %s: %s; %d samples usable", cfg.data, upfront.summary(), len(samples))
    return DialogDataset(samples, model.tokenizer, model.config, cfg.max_length, image_root, features), upfront


def _load_vision_data(cfg: TrainConfig, model, accelerator) -> tuple[VisionDataset, DataReport, VisionHeads]:
    """The vision stage's records and the heads they define (those of the checkpoint when resuming)."""
    records, upfront, root, targets = load_vision_records(cfg.data, cfg.image_root, cfg.allow_absolute_images)
    c = model.config
    if cfg.resume and (Path(cfg.resume) / HEADS_FILE).is_file():
        heads = VisionHeads.load(Path(cfg.resume), c.vision_width)
    else:
        with torch.random.fork_rng(devices=[]):  # the heads' init must not shift the run's random stream
            torch.manual_seed(cfg.seed)
            heads = VisionHeads(c.vision_width, targets)
    if accelerator.is_main_process:
        log.info("data %s: %s; %d pictures usable; heads for %s, counts up to %d", cfg.data, upfront.summary(),
                 len(records), ", ".join(f"{a} ({len(v)})" for a, v in heads.targets.attributes.items()),
                 heads.targets.max_count)
    # In one process, pictures are kept in memory after the first epoch (fp16: 16k pictures of 96 px ~ 0.9 GB).
    keep = cfg.num_workers == 0 and len(records) * c.vision_image_size ** 2 * 6 < 4 * 2**30
    dataset = VisionDataset(records, root, heads.targets, c.vision_image_size, c.vision_patch_size,
                            c.vision_max_aspect, keep=keep)
    return dataset, upfront, heads.to(accelerator.device)


def _count_probe(cfg: TrainConfig, hidden: int) -> CountProbe | None:
    """The count probe when asked for: the checkpoint's when resuming, else a new one seeded by the run's seed."""
    if not cfg.count_weight:
        return None
    if cfg.resume and (Path(cfg.resume) / CountProbe.FILE).is_file():
        return CountProbe.load(Path(cfg.resume), hidden)
    return CountProbe(hidden, cfg.seed)


def _optimizer_step(batches, accumulation: int, wrapped, optimizer, scheduler, accelerator, cfg: TrainConfig,
                    runtime: DataReport) -> dict:
    """One optimizer step: forward -> loss -> backward (x accumulation) -> clip -> step -> schedule."""
    # The whole step's micro-batches first (as HF Trainer does): the loss is a mean over the answer tokens of
    # the step on every process, so their count is needed before the first backward.
    micro = [next(batches) for _ in range(accumulation)]
    for batch in micro:
        runtime.add(batch.report)
    trained, samples, tokens = map(int, global_sums(accelerator, [
        sum(b.trained_tokens for b in micro), sum(len(b) for b in micro), sum(b.tokens for b in micro)]))
    loss_sum = torch.zeros((), device=accelerator.device)
    for k, batch in enumerate(micro):
        # Gradients are exchanged between processes only on the last micro-batch of the step.
        with nullcontext() if k == accumulation - 1 else accelerator.no_sync(wrapped):
            loss = wrapped(batch.to(accelerator.device), num_items=max(trained, 1))  # forward + loss
            # DDP and FSDP average gradients over processes, but each loss is already its share of the mean.
            accelerator.backward(loss * accelerator.num_processes)  # backward
        loss_sum += loss.detach()
    grad_norm = accelerator.clip_grad_norm_(wrapped.parameters(), cfg.max_grad_norm) if cfg.max_grad_norm else None
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    lrs = {g["name"]: lr for g, lr in zip(optimizer.param_groups, scheduler.get_last_lr(), strict=True)}
    return {"loss": accelerator.reduce(loss_sum, "sum").item(), "grad_norm": None if grad_norm is None else
            float(grad_norm), "lr": next(iter(lrs.values())), "llm_lr": lrs.get("llm"), "samples": samples, "tokens": tokens,
            "trained_tokens": trained}


def train(cfg: TrainConfig, model=None) -> TrainResult:
    """Run one stage as configured. `model`: start from this in-memory model (benchmarks) instead of
    init_from / preset."""
    accelerator = make_accelerator(cfg)
    check_launch(accelerator)  # before anything is read or written
    main, world = accelerator.is_main_process, accelerator.num_processes
    set_seed(cfg.seed, device_specific=True)  # dropout differs between processes, the data order does not
    if cfg.resume:
        _warn_changed(cfg)
    model, parts = prepare_model(cfg, accelerator, model)
    if cfg.stage == "vision":
        dataset, upfront, heads = _load_vision_data(cfg, model, accelerator)
        trainee, collate_fn = VisionTrainee(model, heads), collate_vision
    else:
        dataset, upfront = _load_data(cfg, model, accelerator)
        probe = _count_probe(cfg, model.llm.config.hidden_size)
        trainee = Trainee(model, cached_features=dataset.features is not None, focus_weight=cfg.focus_weight,
                          focus_heads=focus_heads(cfg.focus_heads), count_weight=cfg.count_weight,
                          tally_weight=cfg.tally_weight, tally_head=focus_heads(cfg.tally_head, "tally_head", one=True)[0],
                          count_probe=None if probe is None else probe.to(accelerator.device))
        collate_fn = collate
    if cfg.batch_size % (cfg.micro_batch_size * world):
        raise ValueError(f"batch_size {cfg.batch_size} is not a multiple of micro_batch_size "
                         f"{cfg.micro_batch_size} x {world} processes")
    accumulation = cfg.batch_size // (cfg.micro_batch_size * world)
    steps_per_epoch = len(dataset) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"{len(dataset)} usable samples is less than one batch of {cfg.batch_size}")
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    if main:
        log.info("%d steps of %d (micro-batches of %d), %s, precision %s", total, cfg.batch_size,
                 cfg.micro_batch_size, accelerator.device.type,
                 "bf16 autocast" if accelerator.mixed_precision == "bf16" else "fp32")

    optimizer = build_optimizer(model, parts, cfg, trainee.extras())
    wrapped, optimizer = accelerator.prepare(trainee, optimizer)
    scheduler = build_scheduler(optimizer, total, cfg)
    step, samples_seen, runtime = 0, 0, DataReport()
    if cfg.resume:
        progress = load_training_state(Path(cfg.resume), accelerator, optimizer, scheduler)
        step, samples_seen = progress["step"], progress["samples_seen"]
        if main:  # the saved counts are global already: one process carries them on
            runtime = DataReport.from_dict(progress["runtime_report"])
    out = Path(cfg.output_dir)
    # The step's figures are global already: the meter must not scale them by the number of processes.
    metrics, meter = TrainingLog(out, main, resume_step=step, stage=cfg.stage), StepMeter(1)
    stop = min(total, cfg.stop_at or total)
    bar = tqdm(total=total, initial=step, desc=f"stage {cfg.stage}", unit="step", disable=not main)
    last = out

    def save(folder: Path) -> Path:
        report = global_report(accelerator, DataReport(), runtime)
        save_checkpoint(folder, accelerator, wrapped, optimizer, scheduler, cfg,
                        {"step": step, "epoch": step / steps_per_epoch, "samples_seen": samples_seen,
                         "runtime_report": report.to_dict()})
        if main:
            metrics.plot(Path(cfg.init_from) if cfg.stage == 2 and cfg.init_from else None)
        return folder

    grouped = cfg.group_by_length and hasattr(dataset, "approximate_lengths") and accumulation > 1
    lengths = dataset.approximate_lengths() if grouped else None
    while step < stop:
        epoch, start_step = divmod(step, steps_per_epoch)
        sampler = StepBatches(len(dataset), cfg.micro_batch_size, accumulation, world, accelerator.process_index,
                              cfg.seed, epoch, start_step, lengths)
        # A generator of its own: creating the loader's iterator must not draw from the global RNG, or the
        # dropout masks of a resumed run would differ from the uninterrupted one.
        batches = iter(DataLoader(dataset, batch_sampler=sampler, collate_fn=collate_fn, num_workers=cfg.num_workers,
                                  pin_memory=accelerator.device.type == "cuda",
                                  generator=torch.Generator().manual_seed(cfg.seed + epoch)))
        for _ in range(start_step, steps_per_epoch):
            tick = time.perf_counter()
            stats = _optimizer_step(batches, accumulation, wrapped, optimizer, scheduler, accelerator, cfg, runtime)
            step += 1
            samples_seen += stats["samples"]  # summed over the processes: each may have dropped others
            meter.add(stats, time.perf_counter() - tick)  # log
            bar.update(1)
            bar.set_postfix(meter.postfix())
            if step % cfg.log_every == 0 or step == stop:
                metrics.log(meter.row(step, steps_per_epoch, samples_seen))
            if step % cfg.save_every == 0 and step < total:  # save
                last = save(out / f"step-{step:06d}")
                if main:
                    prune_checkpoints(out, cfg.keep_checkpoints)
            if step >= stop:
                break
    bar.close()
    if step >= total:
        last = save(out)  # the final model is the output folder itself: stage 2's init_from
    elif step % cfg.save_every:  # stopped early (stop_at) between two saves
        last = save(out / f"step-{step:06d}")
    metrics.close()
    report = global_report(accelerator, upfront, runtime)
    if main:
        log.info("finished at step %d of %d; checkpoint %s; data: %s", step, total, last, report.summary())
    return TrainResult(out, last, step, meter.losses, meter.steady_samples_per_s, report, main)
