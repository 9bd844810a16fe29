"""The demo world's data files, written once per (sizes, seed) and reused: every stage of the recipe reads
plain files in the formats training/run.py knows.

    <out>/images/               every picture (PNG or JPEG), plus instance masks for the vision stage
    <out>/vision.jsonl          {"image", "mask", "objects": [{"colour", "shape"}]}   (vision stage)
    <out>/text.jsonl            {"text"}: the world's sentences in both languages      (text stage)
    <out>/stage1.json           LLaVA records: captions                                  (stage 1)
    <out>/stage2.json           LLaVA records: every skill, one- to three-turn dialogs   (stage 2)
    <out>/named.json            LLaVA records: a named object among several, if sizes.named (symbols.py)
    <out>/eval.jsonl            held-out dialogs with the expected answer                (scoring)
    <out>/eval_other.jsonl      one big shape drawn by matplotlib, JPEG quality 60       (scoring)
    <out>/manifest.json         what was built; its presence (and equal sizes) means "reuse"

Pictures are drawn by several processes (two by default; the recipe uses one per core, 16 at most); the item
seed alone decides each picture, so the files are the same whatever the number of processes.
"""

from __future__ import annotations

import json
import logging
import random
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from training.demo_world import language as L
from training.demo_world.focus import record_focus
from training.demo_world.questions import ask
from training.demo_world.scenes import Scene, encode, render, vision_scene
from training.demo_world.tasks import EVAL_SKILLS, groups, sample_task
from training.demo_world.variants import GREETED, greeted, named_task
from training.folders import replaced_atomically

log = logging.getLogger(__name__)
VERSION = 11  # bump when the generator changes what it draws or says


@dataclass(frozen=True)
class WorldSizes:
    # pictures with masks for the vision stage (stage 1 captions reuse the first ones). 16,000 seen 6.4 times each
    # in its 1,600 steps: 0.737 in all after stage 2, 0.724 with 8,000 seen 12.8 times, 0.732 with 32,000
    # (docs/demo-model.md, "The vision stage's length")
    vision: int = 16000
    stage1: int = 1600  # 50 steps of 32
    stage2: int = 9600  # 300 steps of 32 per epoch (the epochs: training/configs/demo/stage2.yaml)
    eval: int = 2700  # held out: 150 per skill and language
    other: int = 300  # held out, drawn by another program
    text: int = 4000
    named: int = 0  # questions about one named object among several (variants.named_task): not a recipe step's data
    seed: int = 0


SHORT = WorldSizes(vision=2400, stage1=640, stage2=5120, eval=270, other=200, text=1000)


def _draw_one(job: tuple[dict, str, str | None, int]) -> None:
    """Worker process: draw one scene to `path` (and its mask to `mask_path`)."""
    scene_dict, path, mask_path, seed = job
    image, mask = render(Scene.from_dict(scene_dict))
    data, _ = encode(image, random.Random(seed), Path(path).suffix.lstrip(".").replace("jpg", "jpeg"))
    Path(path).write_bytes(data)
    if mask_path:
        mask.save(mask_path, "PNG")


def _suffix(rng: random.Random) -> str:
    return rng.choice((".png", ".jpg", ".jpg"))


def _llava(sample: dict, image_paths: list[str], sample_id: str) -> dict:
    conversations = []
    for images, question, answer in sample["turns"]:
        tags = "".join("<image>\n" for _ in images)
        conversations += [{"from": "human", "value": tags + question}, {"from": "gpt", "value": answer}]
    record = {"id": sample_id, "conversations": conversations}
    if image_paths:
        record["image"] = image_paths
    if sample.get("image_markers"):
        record["image_markers"] = sample["image_markers"]
    if sample.get("scenes"):
        record["focus"] = record_focus(conversations, sample["scenes"], bool(sample.get("image_markers")))
    return record



def _messages(sample: dict, image_paths: list[str]) -> list[dict]:
    """Protocol messages up to the last question (earlier answers as the assistant said them)."""
    messages = []
    for i, (images, question, answer) in enumerate(sample["turns"]):
        content = [{"type": "image", "key": image_paths[k]} for k in images] + [{"type": "text", "text": question}]
        messages.append({"role": "user", "content": content})
        if i < len(sample["turns"]) - 1:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return messages


def _episode(sample: dict) -> str:
    """A dialog told in words: each picture described where it would be shown, then the questions and answers.
    The LLM learns the two languages and, more to the point, to answer from what came before it in the
    sequence: later, the pictures' own vectors stand where these descriptions stand."""
    scenes, out = sample["scenes"], []
    for images, question, answer in sample["turns"]:
        for k in images:
            objects = [(o.shape, o.colour, o.region) for o in sorted(scenes[k].objects, key=lambda o: o.x)]
            out.append(L.picture_in_words(objects, sample["lang"], k if len(scenes) > 1 else None))
        out += [question, answer]
    return " ".join(out)


# The world's text (the tokenizer's and the text stage's) is drawn with a mix of its own, stage 2's of VERSION 10:
# a change to stage 2's mix then leaves the tokenizer, and every step the recipe trains before stage 2, as they were.
TEXT_MIX = {"caption": 0.08, "colour": 0.07, "shape": 0.08, "count": 0.1, "exists": 0.08, "position": 0.08,
            "followup": 0.06, "two_photos": 0.12, "text": 0.06, "dense": 0.27, "unframed": 0.03}


def _text_lines(rng: random.Random, n: int) -> list[str]:
    """The text stage's lines: one or two episodes each (40-100 tokens), so the LLM trains at the positions the
    picture dialogs reach later (a RoPE model does not carry over to positions it never saw)."""
    return [" ".join(_episode(sample_task(rng, mix=TEXT_MIX)) for _ in range(rng.randint(1, 2))) for _ in range(n)]


class _Pictures:
    """Collects drawing jobs; `draw_all` runs them in a process pool."""

    def __init__(self, root: Path):
        self.root, self.jobs = root, []

    def add(self, scene: Scene, name: str, rng: random.Random, mask: bool = False) -> str:
        rel = f"images/{name}{_suffix(rng)}"
        mask_rel = f"images/{name}.mask.png" if mask else None
        self.jobs.append((scene.to_dict(), str(self.root / rel), str(self.root / mask_rel) if mask else None,
                          rng.randrange(2**31)))
        return rel

    def draw_all(self, processes: int) -> None:
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        with ProcessPoolExecutor(processes) as pool:
            list(tqdm(pool.map(_draw_one, self.jobs, chunksize=64), total=len(self.jobs), desc="drawing",
                      unit="img"))


def _write_jsonl(path: Path, records) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def _eval_items(pics: _Pictures, n: int, seed: int) -> list[dict]:
    """Held-out dialogs, balanced: the same number of items per skill and language."""
    rng, items = random.Random(seed), []
    for i in range(n):
        skill, lang = EVAL_SKILLS[i % len(EVAL_SKILLS)], L.LANGUAGES[(i // len(EVAL_SKILLS)) % 2]
        sample = sample_task(rng, skill, lang)
        paths = [pics.add(s, f"e{i:06d}_{k}", rng) for k, s in enumerate(sample["scenes"])]
        items.append({"id": f"e{i:06d}", "skill": skill, "lang": lang, "messages": _messages(sample, paths),
                      "expect": sample["expect"]})
    return items


def _write_eval(folder: Path, items: list[dict], other: int, seed: int) -> None:
    from training.demo_world.other_programs import draw_other_set

    _write_jsonl(folder / "eval.jsonl", items)
    _write_jsonl(folder / "eval_other.jsonl", draw_other_set(folder, other, seed))


def build_eval(out: str | Path, n: int = 2700, other: int = 300, seed: int = 1000, processes: int = 2) -> Path:
    """Only a held-out set (eval.jsonl, eval_other.jsonl and their pictures), from a seed of its own: for
    bench/demo_world.py and for a model trained elsewhere. Reused when built before with the same sizes."""
    out = Path(out)
    manifest = {"version": VERSION, "eval": n, "other": other, "seed": seed}
    if (out / "manifest.json").is_file() and json.loads((out / "manifest.json").read_text()) == manifest:
        return out
    with replaced_atomically(out) as tmp:
        pics = _Pictures(tmp)
        items = _eval_items(pics, n, seed)
        pics.draw_all(processes)
        _write_eval(tmp, items, other, seed + 1)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _manifest(sizes: WorldSizes) -> dict:
    return {"version": VERSION, **asdict(sizes)}


def is_built(out: str | Path, sizes: WorldSizes = WorldSizes()) -> bool:
    """Whether `out` holds a whole world drawn with these sizes by this VERSION (its manifest is written last)."""
    manifest = Path(out) / "manifest.json"
    return manifest.is_file() and json.loads(manifest.read_text()) == _manifest(sizes)


def build(out: str | Path, sizes: WorldSizes = WorldSizes(), processes: int = 2) -> Path:
    """Write the world's data under `out` (or reuse it if it was built with these sizes); -> `out`."""
    out = Path(out)
    if is_built(out, sizes):
        log.info("demo world data in %s is up to date", out)
        return out
    with replaced_atomically(out) as tmp:
        _write_world(tmp, sizes, processes)
        (tmp / "manifest.json").write_text(json.dumps(_manifest(sizes), indent=2) + "\n")
    return out


def _write_world(tmp: Path, sizes: WorldSizes, processes: int) -> None:
    pics = _Pictures(tmp)
    rng = random.Random(sizes.seed)

    vision, captions = [], []
    for i in range(sizes.vision):
        scene = vision_scene(rng)
        path = pics.add(scene, f"v{i:06d}", rng, mask=True)
        vision.append({"image": path, "mask": path.rsplit(".", 1)[0] + ".mask.png",
                       "objects": [{"colour": o.colour, "shape": o.shape} for o in scene.objects]})
        if i < sizes.stage1:  # stage 1 describes the same pictures
            lang = rng.choice(L.LANGUAGES)
            turn = ([0], ask("caption", lang, rng), L.describe(groups(scene), lang))
            captions.append(_llava({"turns": [turn]}, [path], f"c{i:06d}"))

    def task_records(n: int, prefix: str, seed: int, sampler=sample_task):
        task_rng = random.Random(seed)
        for i in range(n):
            sample = sampler(task_rng)
            paths = [pics.add(s, f"{prefix}{i:06d}_{k}", task_rng) for k, s in enumerate(sample["scenes"])]
            yield sample, paths, f"{prefix}{i:06d}"

    greet_rng = random.Random(sizes.seed + 6)  # its own stream: the dialogs themselves stay as they were drawn
    stage2 = [_llava(greeted(s, greet_rng) if greet_rng.random() < GREETED else s, p, sid)
              for s, p, sid in task_records(sizes.stage2, "s", sizes.seed + 1)]
    named = [_llava(s, p, sid) for s, p, sid in task_records(sizes.named, "n", sizes.seed + 5, named_task)]
    evaluation = _eval_items(pics, sizes.eval, sizes.seed + 2)
    pics.draw_all(processes)
    _write_eval(tmp, evaluation, sizes.other, sizes.seed + 3)
    _write_jsonl(tmp / "vision.jsonl", vision)
    _write_jsonl(tmp / "text.jsonl", ({"text": t} for t in _text_lines(random.Random(sizes.seed + 4), sizes.text)))
    (tmp / "stage1.json").write_text(json.dumps(captions, ensure_ascii=False))
    (tmp / "stage2.json").write_text(json.dumps(stage2, ensure_ascii=False))
    if named:
        (tmp / "named.json").write_text(json.dumps(named, ensure_ascii=False))
