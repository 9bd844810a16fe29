"""The processes of one run: the Accelerator, a check that the launch gave what it was asked for, and the
counts that only make sense summed over every process.

`accelerate launch` falls back quietly when it cannot give what was asked (accelerate 1.15):
- `--cpu --num_processes N` (or no flag, on a machine without GPUs) starts one process that trains alone
  (its CPU launcher needs MPI);
- `--multi_gpu` on a machine without GPUs, unless ACCELERATE_USE_CPU=true, starts N processes that each
  think they are alone: N independent runs writing into one output_dir;
- an FSDP config on CPUs runs plain DDP (accelerate enables FSDP for GPU-like devices only).
Each of these is refused with one line that says what to run instead.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

from training.config import TrainConfig
from training.records import REASONS, DataReport

# Where torchrun and the MPI flavours accelerate knows put the number of processes they started.
WORLD_SIZE_VARS = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
ON_CPUS = "ACCELERATE_USE_CPU=true accelerate launch --multi_gpu --num_processes N training/run.py ..."


class LaunchError(ValueError):
    """The processes that run are not the ones the launch asked for."""


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bf16 itself (AVX512-BF16 or AMX). Without them oneDNN still runs bf16, by
    converting: measured on an Ice Lake Xeon (AVX512 without BF16), the demo recipe's stage 2 made 18 samples/s
    in bf16 autocast against 60 in fp32; on a CPU with AVX512-BF16, bf16 was 1.3x faster than fp32."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def uses_bf16(precision: str, cuda: bool, cpu_bf16: bool) -> bool:
    """Whether a run with this `precision` setting trains in bf16 autocast (TrainConfig.precision)."""
    return precision == "bf16" or (precision in ("auto", "native") and cuda) or (precision == "native" and cpu_bf16)


def make_accelerator(cfg: TrainConfig) -> Accelerator:
    precision = "bf16" if uses_bf16(cfg.precision, torch.cuda.is_available(), cpu_has_bf16()) else "no"
    # accelerate keeps one AcceleratorState per process and refuses an Accelerator with another mixed precision
    # ("already been initialized"): a second run in one process, stage 1 in fp32 and then stage 2 in bf16 on a
    # CPU that has it, would fail. One process alone starts each run afresh (as transformers' TrainingArguments
    # does); under a launcher the processes keep the state they were started with.
    previous = AcceleratorState._shared_state.get("_mixed_precision")
    if previous not in (None, precision) and PartialState().num_processes == 1:
        AcceleratorState._reset_state()
    # Text-only batches (stage 2) leave the adapter and SOI/EOI without gradients; DDP must be told.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision=precision, kwargs_handlers=[ddp])


def launch_problem(num_processes: int, distributed_type: DistributedType, device_type: str,
                   env: Mapping[str, str]) -> str | None:
    """What is wrong with this launch, as one line for people; None when it is what it says."""
    started = next((int(env[v]) for v in WORLD_SIZE_VARS if env.get(v, "").isdigit()), None)
    if started is not None and started != num_processes:
        return (f"the launcher started {started} processes but they did not join one run (each sees "
                f"{num_processes}): they would train side by side into one output_dir. Without GPUs run: {ON_CPUS}")
    if started is None and num_processes == 1 and "ACCELERATE_USE_CPU" in env and "MASTER_ADDR" in env:
        # The simple launcher sets MASTER_ADDR only when asked for several processes, then starts just one.
        return ("accelerate launch started one process although more were asked for (without GPUs its launcher "
                f"needs MPI for that); run: {ON_CPUS}")
    if env.get("ACCELERATE_USE_FSDP", "").lower() == "true" and distributed_type != DistributedType.FSDP:
        return (f"an FSDP launch runs as {distributed_type.value} on {device_type}: accelerate shards only on "
                "GPUs; use training/accelerate/ddp.yaml here")
    return None


def check_launch(accelerator: Accelerator, env: Mapping[str, str] = os.environ) -> None:
    problem = launch_problem(accelerator.num_processes, accelerator.distributed_type, accelerator.device.type, env)
    if problem:
        raise LaunchError(problem)


def global_sums(accelerator: Accelerator, values: list[float]) -> list[float]:
    """Each value summed over all processes, in one collective."""
    local = torch.tensor(values, dtype=torch.float64, device=accelerator.device)
    return accelerator.reduce(local, "sum").tolist()


def global_report(accelerator: Accelerator, upfront: DataReport, runtime: DataReport) -> DataReport:
    """Every process read the whole file (upfront is the same everywhere); runtime counts are summed."""
    keys = list(REASONS)
    counts = global_sums(accelerator, [runtime.skipped[k] for k in keys] + [runtime.truncated])
    total = DataReport(upfront.total, upfront.skipped.copy(), 0)
    total.add(DataReport(0, Counter({k: int(n) for k, n in zip(keys, counts[:-1], strict=True) if n}),
                         int(counts[-1])))
    return total
