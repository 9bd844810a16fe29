"""Two processes of real DDP on the CPU (gloo), started by `accelerate launch` as a maintainer would, for a few
steps of both stages: both processes end with identical trained weights, they split the data without overlap,
a run stopped and resumed equals the uninterrupted one, samples are counted over both processes, and `done` is
printed once. Launches that would not be what they say are refused.

The test launches this very file: under `accelerate launch` its `__main__` block runs a list of training
command lines in the same two processes (one start-up for all of them) and writes, per process, which samples
it read and a hash of the trained weights at every save.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.utils import DistributedType
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
LAUNCH = [sys.executable, "-m", "accelerate.commands.launch", "--main_process_port", "0"]
ON_CPU = ["--multi_gpu", "--num_processes", "2"]  # with ACCELERATE_USE_CPU=true: DDP over gloo
COMMON = ["--num_workers", "0", "--gradient_checkpointing", "false", "--batch_size", "4", "--micro_batch_size", "1",
          "--max_steps", "4", "--warmup_ratio", "0.25", "--save_every", "1000", "--log_every", "1", "--lr", "1e-2",
          "--llm_lr", "1e-3", "--caption_prompt", "Describe."]
RECORDS = 16  # 4 steps of 4 samples: exactly one epoch, so each sample is read exactly once


def launch(args: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false", **(env or {})}
    return subprocess.run([*LAUNCH, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def make_data(root: Path) -> tuple[Path, Path]:
    root.mkdir(parents=True, exist_ok=True)
    captions, dialogs = [], []
    for n, colour in enumerate(["red", "green", "blue", "yellow", "black", "orange", "purple", "grey"]):
        image = Image.new("RGB", (48, 48), "white")
        ImageDraw.Draw(image).ellipse([8, 8, 40, 40], fill=colour)
        image.save(root / f"{n}.png")
        captions += [{"image": f"{n}.png", "caption": f"A {colour} circle."},
                     {"image": f"{n}.png", "caption": f"A {colour} disc on white."}]
        dialogs += [{"image": f"{n}.png", "conversations": [
                        {"from": "human", "value": "<image>\nWhat is it?"}, {"from": "gpt", "value": "A circle."},
                        {"from": "human", "value": "Colour?"}, {"from": "gpt", "value": colour}]},
                    {"conversations": [{"from": "human", "value": f"Say {colour}."}, {"from": "gpt", "value": colour}]}]
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a picture")
    dialogs[5] = {"image": "corrupt.png", "conversations": dialogs[4]["conversations"]}  # dropped as it is read
    (root / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in captions))
    (root / "dialogs.json").write_text(json.dumps(dialogs))
    assert len(captions) == len(dialogs) == RECORDS
    return root / "captions.jsonl", root / "dialogs.json"


def trace(folder: Path, label: str) -> list[dict]:
    return [json.loads((folder / f"{label}.rank{r}.json").read_text()) for r in (0, 1)]


def saved_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {**load_file(folder / "adapter.safetensors"), **load_file(folder / "llm" / "model.safetensors")}


def metrics(folder: Path) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader((folder / "metrics.csv").open())]


@pytest.mark.slow
def test_two_process_ddp_on_cpu_both_stages(tmp_path):
    captions, dialogs = make_data(tmp_path / "data")
    out = {name: tmp_path / name for name in ("s1", "s1_split", "s2", "s2_split")}
    stage1 = ["--stage", "1", "--data", str(captions), "--feature_cache", str(tmp_path / "cache"), *COMMON]
    stage2 = ["--stage", "2", "--data", str(dialogs), "--init_from", str(out["s1"]), *COMMON]
    runs = [("s1", [*stage1, "--output_dir", str(out["s1"])]),
            ("s1_first", [*stage1, "--output_dir", str(out["s1_split"]), "--stop_at", "2"]),
            ("s1_resumed", ["--resume", str(out["s1_split"] / "step-000002")]),
            ("s2", [*stage2, "--output_dir", str(out["s2"])]),
            ("s2_first", [*stage2, "--output_dir", str(out["s2_split"]), "--stop_at", "2"]),
            ("s2_resumed", ["--resume", str(out["s2_split"] / "step-000002")])]
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"trace": str(tmp_path / "trace"), "runs": runs}))
    result = launch([*ON_CPU, __file__, str(plan)], env={"ACCELERATE_USE_CPU": "true"}, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.count("done: step 4") == 4 and result.stdout.count("done: step 2") == 2  # once per run

    for label, _ in runs:
        ranks = trace(tmp_path / "trace", label)
        assert ranks[0]["world"] == ranks[1]["world"] == 2
        assert ranks[0]["saves"] == ranks[1]["saves"], label  # DDP kept both copies of the weights identical
    for stage in ("s1", "s2"):
        straight = trace(tmp_path / "trace", stage)
        first, resumed = trace(tmp_path / "trace", f"{stage}_first"), trace(tmp_path / "trace", f"{stage}_resumed")
        mine = [set(r["seen"]) for r in straight]
        assert not mine[0] & mine[1] and mine[0] | mine[1] == set(range(RECORDS))  # split, each sample once
        for r in (0, 1):  # the stopped and resumed run read exactly what the uninterrupted one read
            assert first[r]["seen"] + resumed[r]["seen"] == straight[r]["seen"]
        assert resumed[0]["saves"][f"{stage}_split"] == straight[0]["saves"][stage]  # bit for bit
        a, b = saved_weights(out[stage]), saved_weights(out[f"{stage}_split"])
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), stage
        assert metrics(out[f"{stage}_split"]) == metrics(out[stage])
        assert len(metrics(out[stage])) == 4

    # Samples are counted over both processes: the picture that does not decode fell to one of them.
    progress = json.loads((out["s2"] / "progress.json").read_text())
    assert progress["samples_seen"] == RECORDS - 1
    assert progress["runtime_report"]["skipped"] == {"unreadable_image": 1}
    assert json.loads((out["s1"] / "progress.json").read_text())["samples_seen"] == RECORDS


@pytest.mark.slow
@pytest.mark.parametrize("how, env, says", [
    (["--cpu", "--num_processes", "2"], {}, "started one process although more were asked for"),
    (ON_CPU, {"ACCELERATE_USE_CPU": ""}, "the launcher started 2 processes but they did not join one run"),
    (["--config_file", "training/accelerate/fsdp.yaml", "--num_processes", "2"], {"ACCELERATE_USE_CPU": "true"},
     "an FSDP launch runs as MULTI_CPU on cpu"),
])
def test_a_launch_that_is_not_what_it_says_is_refused(tmp_path, how, env, says):
    captions, _ = make_data(tmp_path / "data")
    env = {k: v for k, v in {**os.environ, **env}.items() if v}  # "": unset it
    result = subprocess.run([*LAUNCH, *how, "training/run.py", "--data", str(captions), *COMMON, "--output_dir",
                             str(tmp_path / "out")], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert says in result.stderr, result.stderr[-3000:]
    assert "done" not in result.stdout and not list((tmp_path / "out").glob("**/training_state.pt"))


def test_launch_problem_reads_what_accelerate_launch_leaves_in_the_environment():
    from training.distributed import launch_problem

    mpi_free = {"ACCELERATE_USE_CPU": "True", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert "started one process" in launch_problem(1, DistributedType.NO, "cpu", mpi_free)  # --cpu --num_processes 2
    no_flag = {**mpi_free, "ACCELERATE_USE_CPU": "False"}  # --num_processes 2 alone, on a machine without GPUs
    assert "started one process" in launch_problem(1, DistributedType.NO, "cpu", no_flag)
    torchrun = {"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert "did not join" in launch_problem(1, DistributedType.NO, "cpu", torchrun)  # --multi_gpu on CPUs
    assert launch_problem(2, DistributedType.MULTI_CPU, "cpu", {**torchrun, "ACCELERATE_USE_CPU": "true"}) is None
    fsdp = {**torchrun, "ACCELERATE_USE_FSDP": "true"}
    assert "FSDP" in launch_problem(2, DistributedType.MULTI_CPU, "cpu", fsdp)
    assert launch_problem(2, DistributedType.FSDP, "cuda", fsdp) is None
    assert launch_problem(1, DistributedType.NO, "cpu", {}) is None  # python training/run.py
    assert launch_problem(1, DistributedType.NO, "cpu", {"ACCELERATE_USE_CPU": "True"}) is None  # --cpu alone


# --- what runs inside the launched processes --------------------------------------------------------------

def _probe(plan_file: str) -> int:
    """Run each planned command line in this process; record what it read and the weights at every save."""
    sys.path.insert(0, str(REPO))
    from training import loop, run
    from training.data import DialogDataset

    plan = json.loads(Path(plan_file).read_text())
    folder, rank, world = Path(plan["trace"]), int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    folder.mkdir(parents=True, exist_ok=True)
    record = {"seen": [], "saves": {}}
    read, save = DialogDataset.__getitem__, loop.save_checkpoint

    def reading(self, i):
        record["seen"].append(i)
        return read(self, i)

    def saving(checkpoint, accelerator, wrapped, *args, **kwargs):
        save(checkpoint, accelerator, wrapped, *args, **kwargs)
        digest = hashlib.sha256()
        for name, p in sorted(accelerator.unwrap_model(wrapped).named_parameters()):
            if p.requires_grad:
                digest.update(name.encode() + p.detach().cpu().numpy().tobytes())
        record["saves"][Path(checkpoint).name] = digest.hexdigest()

    DialogDataset.__getitem__, loop.save_checkpoint = reading, saving
    for label, argv in plan["runs"]:
        record["seen"], record["saves"] = [], {}
        code = run.main(argv)
        (folder / f"{label}.rank{rank}.json").write_text(json.dumps({**record, "world": world, "code": code}))
        if code:
            return code
    return 0


if __name__ == "__main__":
    sys.exit(_probe(sys.argv[1]))
