"""Metrics: one CSV row per `log_every` steps, TensorBoard when it is installed, and the loss curve as a PNG
next to the checkpoints (like Figure 2 of the OmniFusion article: stage 1 and stage 2 side by side when the
run started from a stage-1 output that has its own metrics.csv)."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

log = logging.getLogger(__name__)

CSV_FILE, PLOT_FILE = "metrics.csv", "loss_curve.png"
COLUMNS = ("step", "epoch", "loss", "lr", "llm_lr", "grad_norm", "samples_per_s", "tokens_per_s", "samples_seen",
           "elapsed_s")


class Metrics:
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


def read_rows(path: Path) -> list[dict]:
    with Path(path).open(newline="") as f:
        return list(csv.DictReader(f))


def _smooth(values: list[float], weight: float = 0.9) -> list[float]:
    out, avg = [], None
    for v in values:
        avg = v if avg is None else weight * avg + (1 - weight) * v
        out.append(avg)
    return out


def plot_loss(curves: list[tuple[str, list[dict]]], png: Path) -> Path:
    """One panel per stage: the logged loss and its exponential moving average."""
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
        ax.set_ylabel("cross-entropy on answer tokens")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return png
