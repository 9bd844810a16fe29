"""The vision stage (`stage: vision`): the tower learns to see from instance masks before stage 1.

OmniFusion takes its vision tower pretrained (CLIP). A model trained from scratch needs the same: without it,
stages 1 and 2 learn colour but stay at chance on form (a prototype on this project's picture world showed it).
Contrastive pretraining needs far more data and steps than a CPU gives in minutes, so this stage uses the
densest signal there is: every record names its objects' attributes and carries an instance mask, and the tower
is trained, at the feature layer the model uses (hidden_states[-2]), to tell

    for every patch:   whether an object covers it; that object's attributes (colour, shape, ... whatever the
                       data names), their combination ("red circle") and where the object is (centre, left,
                       right, top, bottom, or unclear); whether the object's centre lies in the patch, and where
    for every object:  its attributes, from its patches' features averaged
    for the picture:   from all patch features averaged, how many objects there are, of each attribute value and
                       each combination, and where the one object of a value or combination is

so that what a question asks for sits in the features the LLM reads, in a form it can pick up: the kind of an
object at each place, and the scene's counts in their mean. The heads are thrown away after the stage; only
the tower is kept (the checkpoint saves them beside it, for an exact resume).

Records (JSONL): {"image": "rel/path.png", "mask": "rel/path.mask.png", "objects": [{"colour": "red", ...}]},
where mask pixel value i + 1 marks object i (0 = background).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import Dataset

from model.vision import clip_geometry, clip_pixels
from training.data import read_image
from training.records import DataReport, outside_root, read_records

HEADS_FILE = "vision_heads.safetensors"
REGIONS = ("centre", "left", "right", "top", "bottom")
# Region classes of a summary target: nothing of that kind, several of them, one in an unclear place, one in a region.
NONE, SEVERAL, UNCLEAR = 0, 1, 2


def region_of(x: float, y: float) -> str | None:
    """Where a centre at (x, y) of the unit square lies, when that is clear: the centre, or the side it leans
    to by at least 1.4 : 1 (a corner is neither "left" nor "top" more than the other)."""
    dx, dy = x - 0.5, y - 0.5
    if max(abs(dx), abs(dy)) < 0.13:
        return "centre"
    if abs(dx) >= 1.4 * abs(dy):
        return "left" if dx < 0 else "right"
    if abs(dy) >= 1.4 * abs(dx):
        return "top" if dy < 0 else "bottom"
    return None


def _region_class(centres: list[tuple[float, float]]) -> int:
    if not centres:
        return NONE
    if len(centres) > 1:
        return SEVERAL
    region = region_of(*centres[0])
    return UNCLEAR if region is None else 3 + REGIONS.index(region)
MIN_OBJECT_PIXELS = 3  # an object cut down to fewer pixels by the centre crop is not there for the model
PATCH_COVER = 0.25  # a patch is an object's when that object covers at least this share of it


class VisionTargets:
    """What the heads learn, derived from the data: the attributes and their values, the largest count."""

    def __init__(self, attributes: dict[str, list[str]], max_count: int):
        self.attributes = {name: sorted(values) for name, values in sorted(attributes.items())}
        self.max_count = max_count
        # Every combination of one value per attribute ("red circle"): the scene summary counts and places them.
        combos = [()]
        for values in self.attributes.values():
            combos = [c + (v,) for c in combos for v in values]
        self.combos = combos

    def to_json(self) -> str:
        return json.dumps({"attributes": self.attributes, "max_count": self.max_count}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> VisionTargets:
        d = json.loads(text)
        return cls(d["attributes"], d["max_count"])

    def for_image(self, mask: Image.Image, objects: list[dict], image_size: int, patch: int) -> dict:
        """Instance mask -> the targets of one image, in the model's view (resized and cropped like pixels)."""
        size, box = clip_geometry(*mask.size, image_size)
        m = np.asarray(mask.resize(size, Image.Resampling.NEAREST).crop(box))  # [S, S] object index + 1
        grid = image_size // patch
        blocks = m.reshape(grid, patch, grid, patch).transpose(0, 2, 1, 3).reshape(grid * grid, patch * patch)
        n = len(objects)
        cover = np.stack([(blocks == i + 1).mean(1) for i in range(n)], 1) if n else np.zeros((grid * grid, 0))
        owner = np.where(cover.max(1, initial=0) >= PATCH_COVER, cover.argmax(1) + 1, 0) if n else \
            np.zeros(grid * grid, np.int64)
        centre = np.zeros(grid * grid, np.float32)
        where = np.zeros((grid * grid, 2), np.float32)
        values = {a: np.full(grid * grid, -1, np.int64) for a in self.attributes}
        counts = {a: np.zeros(len(v), np.int64) for a, v in self.attributes.items()}
        places: dict = {}  # (attribute, value) or a combination -> centres of its objects
        combo = np.full(grid * grid, -1, np.int64)  # the owner's combination of values ("red circle")
        region = np.full(grid * grid, -1, np.int64)  # where the owner is: a REGIONS index, or len(REGIONS)
        instance = np.zeros(grid * grid, np.int64)
        total = 0
        for i, obj in enumerate(objects):
            ys, xs = np.nonzero(m == i + 1)
            if len(xs) < MIN_OBJECT_PIXELS:
                continue
            total += 1
            cx, cy = (xs.mean() + 0.5) / image_size, (ys.mean() + 0.5) / image_size
            centre[min(grid - 1, int(cy * grid)) * grid + min(grid - 1, int(cx * grid))] = 1
            mine = owner == i + 1
            instance[mine], where[mine] = min(i + 1, 15), (cx, cy)
            for a, names in self.attributes.items():
                index = names.index(obj[a])
                values[a][mine] = index
                counts[a][index] += 1
                places.setdefault((a, obj[a]), []).append((cx, cy))
            kind = tuple(obj[a] for a in self.attributes)
            places.setdefault(kind, []).append((cx, cy))
            combo[mine] = self.combos.index(kind)
            where_is = region_of(cx, cy)
            region[mine] = len(REGIONS) if where_is is None else REGIONS.index(where_is)
        # How many objects share the patch's own value of each attribute, and how many there are in all: what a head
        # that attends to the asked objects' patches reads a count from. Not of its combination ("red circle"): with
        # it, the count of a colour or a shape was read one too low more often (docs/demo-model.md).
        same = {a: np.where(values[a] >= 0, np.minimum(counts[a][values[a].clip(0)], self.max_count), -1)
                for a in self.attributes}
        out = {"object": torch.from_numpy((owner > 0).astype(np.float32)), "centre": torch.from_numpy(centre),
               "total": torch.full((grid * grid,), min(total, self.max_count), dtype=torch.long),
               "where": torch.from_numpy(where), "instance": torch.from_numpy(instance),
               "count": torch.tensor(min(total, self.max_count)), "combo": torch.from_numpy(combo),
               "region": torch.from_numpy(region)}
        for a, names in self.attributes.items():
            out[f"value:{a}"] = torch.from_numpy(values[a])
            out[f"same:{a}"] = torch.from_numpy(same[a].astype(np.int64))
            out[f"count:{a}"] = torch.from_numpy(np.minimum(counts[a], self.max_count))
            out[f"region:{a}"] = torch.tensor([_region_class(places.get((a, v), [])) for v in names])
        combo_centres = [places.get(c, []) for c in self.combos]
        out["count:combo"] = torch.tensor([min(len(c), self.max_count) for c in combo_centres])
        out["region:combo"] = torch.tensor([_region_class(c) for c in combo_centres])
        return out


def load_vision_records(path, image_root, allow_absolute: bool = False) -> tuple[list[dict], DataReport, Path,
                                                                                 VisionTargets]:
    """-> (usable records, what was skipped, the image root, the targets the data defines)."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent
    report, records, attributes, most = DataReport(), [], {}, 1
    for r in read_records(path, report):
        objects = r.get("objects") if isinstance(r, dict) else None
        if not (isinstance(r, dict) and isinstance(r.get("image"), str) and isinstance(r.get("mask"), str)
                and isinstance(objects, list) and all(isinstance(o, dict) and o and
                                                      all(isinstance(v, str) for v in o.values()) for o in objects)):
            report.skipped["bad_record"] += 1
        elif any(outside_root(k, allow_absolute) for k in (r["image"], r["mask"])):
            report.skipped["outside_root"] += 1
        elif not ((root / r["image"]).is_file() and (root / r["mask"]).is_file()):
            report.skipped["missing_image"] += 1
        else:
            records.append(r)
            most = max(most, len(objects))
            for o in objects:
                for name, value in o.items():
                    attributes.setdefault(name, set()).add(value)
    # Every object must name every attribute, or a patch would have no label for it.
    names = set(attributes)
    usable = [r for r in records if all(set(o) == names for o in r["objects"])]
    report.skipped["bad_record"] += len(records) - len(usable)
    return usable, report, root, VisionTargets({k: list(v) for k, v in attributes.items()}, most)


class VisionDataset(Dataset):
    """Record i -> {"pixels": [3, S, S], "targets": {...}}, or the skip reason.

    `keep`: hold every item after its first use (pixels in fp16), for a run that reads each picture many times
    in one process (num_workers 0): decoding, resizing and deriving targets cost about as much as the step."""

    def __init__(self, records: list[dict], root: Path, targets: VisionTargets, image_size: int, patch: int,
                 max_aspect: float, keep: bool = False):
        self.records, self.root, self.targets = records, root, targets
        self.image_size, self.patch, self.max_aspect = image_size, patch, max_aspect
        self.kept: dict[int, dict | str] | None = {} if keep else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict | str:
        if self.kept is not None:
            if i not in self.kept:
                item = self._read(i)
                self.kept[i] = item if isinstance(item, str) else {**item, "pixels": item["pixels"].half()}
            item = self.kept[i]
            return item if isinstance(item, str) else {**item, "pixels": item["pixels"].float()}
        return self._read(i)

    def _read(self, i: int) -> dict | str:
        r = self.records[i]
        image = read_image(self.root / r["image"])
        if image is None:
            return "unreadable_image"
        try:
            mask = Image.open(self.root / r["mask"]).convert("L")
        except OSError:
            return "unreadable_image"
        if mask.size != image.size or max(image.size) > self.max_aspect * min(image.size):
            return "bad_record"  # the mask must match the picture, and panoramas are padded (not masked)
        return {"pixels": clip_pixels(image, self.image_size, self.max_aspect),
                "targets": self.targets.for_image(mask, r["objects"], self.image_size, self.patch)}


class VisionBatch:
    """The vision stage's micro-batch; the loop sees the same counters as on a dialog micro-batch. Each image
    weighs one in the loss, so `trained_tokens` counts images."""

    def __init__(self, pixels: torch.Tensor | None, targets: dict, report: DataReport):
        self.pixels, self.targets, self.report = pixels, targets, report
        self.trained_tokens = 0 if pixels is None else len(pixels)
        self.tokens = self.trained_tokens

    def __len__(self) -> int:
        return self.trained_tokens

    def to(self, device: torch.device) -> VisionBatch:
        pixels = None if self.pixels is None else self.pixels.to(device, non_blocking=True)
        return VisionBatch(pixels, {k: v.to(device) for k, v in self.targets.items()}, self.report)


def collate_vision(items: list[dict | str]) -> VisionBatch:
    report = DataReport()
    report.skipped.update(i for i in items if isinstance(i, str))
    kept = [i for i in items if not isinstance(i, str)]
    if not kept:
        return VisionBatch(None, {}, report)
    targets = {k: torch.stack([i["targets"][k] for i in kept]) for k in kept[0]["targets"]}
    return VisionBatch(torch.stack([i["pixels"] for i in kept]), targets, report)


class VisionHeads(nn.Module):
    def __init__(self, width: int, targets: VisionTargets):
        super().__init__()
        self.targets = targets
        counts = targets.max_count + 1
        self.object, self.centre, self.where = nn.Linear(width, 1), nn.Linear(width, 1), nn.Linear(width, 2)
        self.patch_combo = nn.Linear(width, len(targets.combos))
        self.patch_region = nn.Linear(width, len(REGIONS) + 1)
        self.count = nn.Linear(width, counts)
        self.patch_value = nn.ModuleDict({a: nn.Linear(width, len(v)) for a, v in targets.attributes.items()})
        self.patch_same = nn.ModuleDict({a: nn.Linear(width, counts) for a in targets.attributes})
        self.patch_total = nn.Linear(width, counts)
        self.object_value = nn.ModuleDict({a: nn.Linear(width, len(v)) for a, v in targets.attributes.items()})
        self.value_count = nn.ModuleDict({a: nn.Linear(width, len(v) * counts)
                                          for a, v in targets.attributes.items()})
        regions = 3 + len(REGIONS)
        self.value_region = nn.ModuleDict({a: nn.Linear(width, len(v) * regions)
                                           for a, v in targets.attributes.items()})
        self.combo_count = nn.Linear(width, len(targets.combos) * counts)
        self.combo_region = nn.Linear(width, len(targets.combos) * regions)

    def save(self, folder: Path) -> None:
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        save_file(state, str(Path(folder) / HEADS_FILE), metadata={"targets": self.targets.to_json()})

    @classmethod
    def load(cls, folder: Path, width: int) -> VisionHeads:
        from safetensors import safe_open

        with safe_open(str(Path(folder) / HEADS_FILE), "pt") as f:
            targets = VisionTargets.from_json(f.metadata()["targets"])
        heads = cls(width, targets)
        heads.load_state_dict(load_file(str(Path(folder) / HEADS_FILE)))
        return heads


class VisionTrainee(nn.Module):
    """The tower and its heads in one forward (DDP and FSDP see all the work, as in training/trainee.py)."""

    def __init__(self, model, heads: VisionHeads):
        super().__init__()
        self.model, self.heads = model, heads

    def extras(self) -> dict[str, nn.Module]:
        """Modules trained beside the model: optimized with it, saved beside its checkpoints, then thrown away."""
        return {"heads": self.heads}

    def forward(self, batch: VisionBatch, num_items: int | None = None) -> torch.Tensor:
        if batch.pixels is None:
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        features = self.model.vision(batch.pixels)  # [B, N, W]
        per_image = self.losses(features, batch.targets)  # each term a mean over the batch
        return per_image * len(batch) / (num_items if num_items is not None else len(batch))

    def losses(self, f: torch.Tensor, t: dict) -> torch.Tensor:
        h = self.heads
        counts = h.targets.max_count + 1
        on = t["object"] > 0  # [B, N]
        loss = F.binary_cross_entropy_with_logits(h.object(f)[..., 0], t["object"])
        loss = loss + F.binary_cross_entropy_with_logits(h.centre(f)[..., 0], t["centre"],
                                                         pos_weight=torch.tensor(8.0, device=f.device))
        if on.any():
            loss = loss + 10 * (h.where(f)[on] - t["where"][on]).pow(2).sum(-1).mean()
            loss = loss + F.cross_entropy(h.patch_combo(f)[on], t["combo"][on])
            loss = loss + F.cross_entropy(h.patch_region(f)[on], t["region"][on])
        loss = loss + F.cross_entropy(h.patch_total(f).flatten(0, 1), t["total"].flatten())
        # Features averaged over each object: what the object is, told by all of its patches together.
        members = F.one_hot(t["instance"], 16)[..., 1:].float()  # [B, N, 15]
        size = members.sum(1)  # [B, 15]
        pooled = torch.einsum("bnk,bnw->bkw", members, f) / size.clamp(min=1)[..., None]  # [B, 15, W]
        present = size > 0
        picture = f.mean(1)  # [B, W]
        loss = loss + F.cross_entropy(h.count(picture), t["count"])
        for a, names in h.targets.attributes.items():
            values = t[f"value:{a}"]  # [B, N], -1 where no object
            if on.any():
                loss = loss + F.cross_entropy(h.patch_value[a](f)[on], values[on])
                loss = loss + F.cross_entropy(h.patch_same[a](f)[on], t[f"same:{a}"][on])
            if present.any():
                per_object = (members * values.clamp(min=0)[..., None]).amax(1).long()  # [B, 15]
                loss = loss + F.cross_entropy(h.object_value[a](pooled[present]), per_object[present])
            logits = h.value_count[a](picture).view(-1, len(names), counts)
            loss = loss + F.cross_entropy(logits.flatten(0, 1), t[f"count:{a}"].flatten())
            logits = h.value_region[a](picture).view(-1, len(names), 3 + len(REGIONS))
            loss = loss + F.cross_entropy(logits.flatten(0, 1), t[f"region:{a}"].flatten())
        combos = len(h.targets.combos)
        logits = h.combo_count(picture).view(-1, combos, counts)
        loss = loss + F.cross_entropy(logits.flatten(0, 1), t["count:combo"].flatten())
        logits = h.combo_region(picture).view(-1, combos, 3 + len(REGIONS))
        return loss + F.cross_entropy(logits.flatten(0, 1), t["region:combo"].flatten())
