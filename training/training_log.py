"""The training log: one CSV row per `log_every` steps, TensorBoard when it is installed, and the loss curve as a PNG
next to the checkpoints (like Figure 2 of the OmniFusion article: stage 1 and stage 2 side by side when the
run started from a stage-1 output that has its own metrics.csv)."""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path

log = logging.getLogger(__name__)

CSV_FILE, PLOT_FILE = "metrics.csv", "loss_curve.png"
COLUMNS = ("step", "epoch", "loss", "lr", "llm_lr", "grad_norm", "samples_per_s", "tokens_per_s", "samples_seen",
           "elapsed_s")


class TrainingLog:
    """Only the main process writes. On resume, rows after the resumed step are dropped: they belong to the
    interrupted run's future, which the resumed run replays."""

    def __init__(self, folder: Path, enabled: bool, resume_step: int = 0, stage: int = 1):
        self.folder, self.enabled, self.stage = Path(folder), enabled, stage
        self.path = self.folder / CSV_FILE
        self.tb = None
        if not enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        rows = read_rows(self.path) if resume_step and self.path.is_file() else []
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, COLUMNS)
            writer.writeheader()
            writer.writerows(r for r in rows if int(float(r["step"])) <= resume_step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(self.folder / "tensorboard"), purge_step=resume_step + 1 or None)
        except ImportError:  # tensorboard is optional
            pass

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, COLUMNS).writerow({k: row.get(k, "") for k in COLUMNS})
        if self.tb is not None:
            for key in ("loss", "lr", "llm_lr", "grad_norm", "samples_per_s", "tokens_per_s"):
                if isinstance(row.get(key), int | float):
                    self.tb.add_scalar(f"train/{key}", row[key], row["step"])

    def plot(self, previous_stage: Path | None = None) -> Path | None:
        if not self.enabled:
            return None
        curves = []
        if previous_stage is not None and (previous_stage / CSV_FILE).is_file():
            curves.append((f"stage {self.stage - 1}", read_rows(previous_stage / CSV_FILE)))
        curves.append((f"stage {self.stage}", read_rows(self.path)))
        return plot_loss(curves, self.folder / PLOT_FILE)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


class StepMeter:
    """Per-step figures -> the progress bar, the averaged metrics rows and the run's steady throughput.
    Counts are this process's; samples and tokens are scaled by the number of processes (they all do alike)."""

    def __init__(self, processes: int):
        self.processes = processes
        self.losses: list[float] = []  # every step of this run
        self.last: dict = {}
        self._window: list[tuple[dict, float]] = []  # steps since the last row
        self._steady = [0, 0.0]  # samples and seconds from the second step on (the first pays for warm-up)
        self._started = time.perf_counter()

    def add(self, stats: dict, seconds: float) -> None:
        self.losses.append(stats["loss"])
        self.last = {**stats, "seconds": seconds}
        self._window.append((stats, seconds))
        if len(self.losses) > 1:
            self._steady[0] += stats["samples"] * self.processes
            self._steady[1] += seconds

    def postfix(self) -> dict:
        s = self.last
        return {"loss": f"{s['loss']:.4f}", "lr": f"{s['lr']:.2e}",
                "samples_s": f"{s['samples'] * self.processes / s['seconds']:.1f}"}

    def row(self, step: int, steps_per_epoch: int, samples_seen: int) -> dict:
        """The metrics row for the steps since the previous one; starts a new window."""
        seconds = sum(t for _, t in self._window)
        total = {k: sum(s[k] for s, _ in self._window) * self.processes for k in ("samples", "tokens")}
        last = self._window[-1][0]
        row = {"step": step, "epoch": round(step / steps_per_epoch, 4),
               "loss": sum(s["loss"] for s, _ in self._window) / len(self._window), "lr": last["lr"],
               "llm_lr": "" if last["llm_lr"] is None else last["llm_lr"],
               "grad_norm": "" if last["grad_norm"] is None else last["grad_norm"],
               "samples_per_s": total["samples"] / seconds, "tokens_per_s": total["tokens"] / seconds,
               "samples_seen": samples_seen, "elapsed_s": round(time.perf_counter() - self._started, 2)}
        self._window = []
        return row

    @property
    def steady_samples_per_s(self) -> float:
        return self._steady[0] / self._steady[1] if self._steady[1] else 0.0


def read_rows(path: Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _smooth(values: list[float], share: float = 0.05) -> list[float]:
    """A centred running mean over `share` of the points on each side, the window narrowed to stay symmetric
    near the ends (the first and last points are their own). Not an exponential average: over the ~30 rows of a
    short stage, whose loss falls steeply, one with weight 0.9 lagged by a factor of 4 at its end (0.4 drawn
    against a logged 0.1), and a curve that lags says the wrong thing."""
    n, half = len(values), int(len(values) * share)
    out = []
    for i in range(n):
        w = min(half, i, n - 1 - i)
        out.append(sum(values[i - w:i + w + 1]) / (2 * w + 1))
    return out


def plot_loss(curves: list[tuple[str, list[dict]]], png: Path) -> Path:
    """One panel per stage: the logged loss and its running mean."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4), squeeze=False)
    for ax, (title, rows) in zip(axes[0], curves, strict=True):
        points = [(int(float(r["step"])), float(r["loss"])) for r in rows if r.get("loss") not in ("", None)]
        points = [(s, v) for s, v in points if math.isfinite(v)]
        if points:
            steps, losses = zip(*points, strict=True)
            ax.plot(steps, losses, color="tab:blue", alpha=0.3, linewidth=1, label="loss")
            ax.plot(steps, _smooth(list(losses)), color="tab:blue", linewidth=2, label="smoothed")
            ax.legend()
        ax.set_title(f"{title}: training loss")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("the vision heads' loss" if "vision" in title else "cross-entropy on answer tokens")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
