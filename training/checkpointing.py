"""Checkpoints: the model in our serving format plus what an exact resume needs.

    <folder>/config.json, adapter.safetensors, vision.safetensors, llm/   OmniFusion.save_pretrained
    <folder>/train_config.yaml   the resolved TrainConfig
    <folder>/progress.json       step, samples seen, data report (small, human-readable)
    <folder>/training_state.pt   optimizer, scheduler, RNG of process 0 (tensors and plain types only, so it
                                 loads with weights_only=True); written LAST: its presence marks completeness
    <folder>/process-<r>.pt      RNG (and, under FSDP, the optimizer shard) of process r > 0

The trained weights are saved in their training precision (fp32), so a resumed run continues bit for bit;
`from_pretrained(..., dtype=...)` casts them for serving.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import DistributedType
from safetensors.torch import save_file

from model.dialog import SPECIALS
from model.weights import ADAPTER_FILE, CONFIG_FILE, VISION_FILE
from training.config import PROGRESS_FILE, SAVED_CONFIG, STATE_FILE, TrainConfig

SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED)


def rng_state() -> dict:
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"python": list(random.getstate()[1]), "python_version": random.getstate()[0],
            "python_gauss": random.getstate()[2], "numpy": [kind, torch.from_numpy(keys.copy()), pos, has_gauss, gauss],
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def set_rng_state(state: dict) -> None:
    random.setstate((state["python_version"], tuple(state["python"]), state["python_gauss"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy(), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_model(accelerator, wrapped, folder: Path) -> None:
    trainee = accelerator.unwrap_model(wrapped)
    model = trainee.model
    if accelerator.distributed_type not in SHARDED:
        if accelerator.is_main_process:
            model.save_pretrained(folder)
            for module in trainee.extras().values():  # not part of the model (the vision stage's heads, the
                module.save(folder)  # count probe): kept beside it so that a resumed run goes on with them
        return
    # Sharded weights: gather a full state dict (a collective: every process takes part), then process 0
    # writes the same files as save_pretrained. UNTESTED here (no multi-GPU machine); see docs/training.md.
    state = accelerator.get_state_dict(wrapped)
    if not accelerator.is_main_process:
        return

    def part(prefix: str) -> dict:
        return {k[len(prefix):]: v.contiguous().cpu() for k, v in state.items() if k.startswith(prefix)}

    folder.mkdir(parents=True, exist_ok=True)
    model.config.save(folder / CONFIG_FILE)
    adapter = part("model.adapter.") | {n: state[f"model.special.{n}"].contiguous().cpu() for n in SPECIALS}
    save_file(adapter, str(folder / ADAPTER_FILE), metadata={"format": "pt"})
    save_file(part("model.vision.tower."), str(folder / VISION_FILE), metadata={"format": "pt"})
    model.llm.save_pretrained(folder / model.config.llm_subfolder, state_dict=part("model.llm."))
    model.tokenizer.save_pretrained(folder / model.config.llm_subfolder)


def save_checkpoint(folder: Path, accelerator, wrapped, optimizer, scheduler, cfg: TrainConfig,
                    progress: dict) -> None:
    """Every process calls this. The state file goes last, so a save cut short never looks complete."""
    folder = Path(folder)
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / STATE_FILE).unlink(missing_ok=True)
    accelerator.wait_for_everyone()
    _save_model(accelerator, wrapped, folder)
    sharded = accelerator.distributed_type in SHARDED
    own = {"rng": rng_state()}
    if sharded:
        own["optimizer"] = optimizer.state_dict()
    if not accelerator.is_main_process:
        torch.save(own, folder / f"process-{accelerator.process_index}.pt")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        cfg.save(folder / SAVED_CONFIG)
        (folder / PROGRESS_FILE).write_text(json.dumps({**progress, "processes": accelerator.num_processes},
                                                        indent=2) + "\n")
        state = {**own, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "step": progress["step"], "processes": accelerator.num_processes}
        torch.save(state, folder / (STATE_FILE + ".tmp"))
        (folder / (STATE_FILE + ".tmp")).replace(folder / STATE_FILE)
    accelerator.wait_for_everyone()


def load_training_state(folder: Path, accelerator, optimizer, scheduler) -> dict:
    """Restore optimizer, scheduler and this process's RNG; -> the saved progress dict."""
    folder = Path(folder)
    progress = json.loads((folder / PROGRESS_FILE).read_text())
    if progress["processes"] != accelerator.num_processes:
        raise ValueError(f"{folder} was saved by {progress['processes']} processes, this run has "
                         f"{accelerator.num_processes}: the data order and any sharded state would not match")
    state = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
    own = state if accelerator.is_main_process else torch.load(
        folder / f"process-{accelerator.process_index}.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(own["optimizer"] if accelerator.distributed_type in SHARDED else state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(own["rng"])
    return progress


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` step-NNNNNN folders (0 keeps all)."""
    if keep <= 0:
        return
    steps = sorted(Path(output_dir).glob("step-*"), key=lambda d: d.name)
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
