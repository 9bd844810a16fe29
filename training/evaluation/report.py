"""Results as JSON (everything, each question's prediction included) plus a markdown table that puts our
figures beside the published ones."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training.evaluation.common import Scores


@dataclass(frozen=True)
class Published:
    metric: str
    value: float
    source: str


README = "OmniFusion README, v1.1 (one encoder)"
ARTICLE = "seed article, OmniFusion 1.0 (per cent there)"
# Which metric a README figure is, and with which script it was computed, is not stated; the numbers are
# formatted like lmms-eval's output (textvqa, scienceqa_img, pope, gqa, ok_vqa), so that is the likely tool.
PUBLISHED: dict[str, tuple[Published, ...]] = {
    "textvqa": (Published("accuracy", 0.489, README),),
    "scienceqa": (Published("img_accuracy", 0.680, README + "; likely the image subset (scienceqa_img)"),),
    "pope": (Published("accuracy", 0.782, README + "; metric not stated: accuracy or F1"),
             Published("f1", 0.782, README + "; metric not stated: accuracy or F1")),
    "gqa": (Published("accuracy", 0.460, README),),
    "okvqa": (Published("accuracy", 0.519, README),),
    "visdial": (Published("ndcg", 0.2591, ARTICLE), Published("mrr", 0.1078, ARTICLE),
                Published("r@1", 0.0474, ARTICLE), Published("r@5", 0.1380, ARTICLE),
                Published("r@10", 0.2053, ARTICLE)),
}


def markdown(task: str, scores: Scores, settings: dict) -> str:
    published = {p.metric: p for p in PUBLISHED.get(task, ())}
    lines = [f"### {task}", "", "| metric | ours | published | source of the published figure |",
             "|---|---|---|---|"]
    for metric, value in scores.metrics.items():
        p = published.get(metric)
        lines.append(f"| {metric} | {_fmt(value)} | {_fmt(p.value) if p else ''} | {p.source if p else ''} |")
    shown = ", ".join(f"{k}={v}" for k, v in settings.items() if v not in (None, ""))
    counts = ", ".join(f"{k} {v}" for k, v in scores.counts.items())
    scored = [f"{len(scores.rows)} questions scored"] if scores.rows else []
    lines += ["", "; ".join(scored + ([counts] if counts else [])) + "."] + ([f"Settings: {shown}."] if shown else [])
    tables = {name: groups for name, groups in scores.breakdown.items() if groups}
    for name, groups in tables.items():
        if all(isinstance(v, dict) for v in groups.values()):  # e.g. POPE: every metric per split
            columns = list(next(iter(groups.values())))
            lines += ["", f"| {name} | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
            lines += [f"| {k} | " + " | ".join(_fmt(v[c]) for c in columns) + " |" for k, v in groups.items()]
        else:
            lines += ["", f"By {name}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in groups.items()) + "."]
    return "\n".join(lines).rstrip() + "\n"


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write(out: Path, task: str, scores: Scores, settings: dict, source: dict) -> str:
    """-> the markdown, also written beside `out` as .md."""
    result = {"task": task, **source, "settings": settings, "scored": len(scores.rows),
              "metrics": scores.metrics, "breakdown": scores.breakdown, "counts": scores.counts,
              "published": [p.__dict__ for p in PUBLISHED.get(task, ())], "per_question": scores.rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    text = markdown(task, scores, settings)
    out.with_suffix(".md").write_text(text, encoding="utf-8")
    return text
