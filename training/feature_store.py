"""Stage-1 speed: CLIP runs once per image, not once per step.

CLIP is frozen in both stages, so its patch features ([N, W], the vision tower's output before the adapter) are
a pure function of the image. They are stored as fp16 in safetensors shards keyed by the image's path under
the image root; `index.json` maps each path to its shard, records images that would not decode, and stamps each
path with the file's size and modification time when it was read: an image written again at the same path (a
dataset edited, a world drawn anew) is computed again, not served its old features. The index carries a
fingerprint of the vision weights and preprocessing, so a cache built by another encoder is never reused
silently. Filling is incremental (only paths not in the index, or whose file changed) and split across
processes; features of a changed image stay in their old shard, unread.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm import tqdm

from training.data import ClipPreprocess, read_image

log = logging.getLogger(__name__)

INDEX = "index.json"
SHARD_IMAGES = 512  # ~600 MB per shard at ViT-L/14-336 (576 x 1024 fp16 per image)


def file_stamp(path: Path) -> list[int] | None:
    """[size, mtime in ns] of an image file (None when missing): what says it is the file that was read."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def vision_fingerprint(model) -> str:
    """Hash of the vision weights and of everything that shapes preprocessing. Weights are hashed as bf16, so
    the same CLIP held in fp32 on one machine and in bf16 on another shares one cache."""
    h = hashlib.sha256()
    c = model.config
    h.update(json.dumps([c.vision_model, c.vision_image_size, c.vision_patch_size, c.vision_feature_layer,
                         c.vision_max_aspect]).encode())
    for name, tensor in sorted(model.vision.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().to(torch.bfloat16).cpu().contiguous().view(torch.int16).numpy().tobytes())
    return h.hexdigest()


class ClipFeatureStore:
    """Read side: path -> features [N, W] fp16, or None when the image is not cached (or would not decode)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        index = json.loads((self.folder / INDEX).read_text()) if (self.folder / INDEX).is_file() else {}
        self.fingerprint: str | None = index.get("fingerprint")
        self.entries: dict[str, str] = index.get("entries", {})  # path -> shard file name
        self.failed: dict[str, str] = index.get("failed", {})  # path -> why it would not decode
        self.stamps: dict[str, list[int]] = index.get("stamps", {})  # path -> file_stamp when it was read
        self.builds: int = index.get("builds", 0)
        self._open: dict[str, object] = {}

    def __getstate__(self):  # DataLoader workers open their own (memory-mapped) shard handles
        return {**self.__dict__, "_open": {}}

    def __contains__(self, key: str) -> bool:
        return key in self.entries or key in self.failed

    def current(self, key: str, stamp: list[int] | None) -> bool:
        """Cached from the file as it is now (an index without stamps, from before them, is not trusted)."""
        return key in self and stamp is not None and self.stamps.get(key) == stamp

    def get(self, key: str) -> torch.Tensor | None:
        shard = self.entries.get(key)
        if shard is None:
            return None
        if shard not in self._open:
            self._open[shard] = safe_open(str(self.folder / shard), framework="pt")
        return self._open[shard].get_tensor(key)

    def write_index(self) -> None:
        index = {"fingerprint": self.fingerprint, "builds": self.builds, "entries": self.entries,
                 "failed": self.failed, "stamps": self.stamps}
        tmp = self.folder / (INDEX + ".tmp")
        tmp.write_text(json.dumps(index, ensure_ascii=False))
        tmp.replace(self.folder / INDEX)  # atomic: a crash never leaves a half-written index


@torch.no_grad()
def fill_cache(folder: str | Path, paths: list[str], image_root: Path, model, accelerator,
               batch_size: int) -> ClipFeatureStore:
    """Compute the features of every path not cached yet. All processes call this; each takes a share."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cache = ClipFeatureStore(folder)
    fingerprint = vision_fingerprint(model)
    if cache.fingerprint not in (None, fingerprint):
        raise ValueError(f"feature cache {folder} was built by another vision encoder or preprocessing; "
                         "point feature_cache at a new folder (or delete this one)")
    stamps = {p: file_stamp(image_root / p) for p in set(paths)}
    todo = sorted(p for p, stamp in stamps.items() if not cache.current(p, stamp))
    rank, world = accelerator.process_index, accelerator.num_processes
    mine = todo[rank::world]
    preprocess, vision = ClipPreprocess(model.config), model.vision
    param = next(vision.parameters())
    entries, failed, shard, shard_no = {}, {}, {}, 0

    def flush():
        nonlocal shard, shard_no
        if shard:
            name = f"b{cache.builds:03d}-r{rank:03d}-{shard_no:05d}.safetensors"
            save_file(shard, str(folder / name))
            entries.update(dict.fromkeys(shard, name))
            shard, shard_no = {}, shard_no + 1

    bar = tqdm(total=len(mine), desc="CLIP features", unit="img", disable=not accelerator.is_main_process)
    for start in range(0, len(mine), batch_size):
        keys, pixels = [], []
        for key in mine[start:start + batch_size]:
            image = read_image(image_root / key)
            if image is None:
                failed[key] = "unreadable"
                continue
            keys.append(key)
            pixels.append(preprocess(image))
        if pixels:
            feats = vision(torch.stack(pixels).to(param.device, param.dtype))  # [B, N, W]
            for key, f in zip(keys, feats.to(torch.float16).cpu(), strict=True):
                shard[key] = f.contiguous()
            if len(shard) >= SHARD_IMAGES:
                flush()
        bar.update(len(mine[start:start + batch_size]))
    flush()
    bar.close()

    # Every process reports its share through a file; the main one merges them into the index.
    (folder / f"part-r{rank:03d}.json").write_text(json.dumps({"entries": entries, "failed": failed,
                                                                "stamps": {p: stamps[p] for p in mine}}))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process and todo:
        for part in sorted(folder.glob("part-r*.json")):
            data = json.loads(part.read_text())
            for key in data["entries"]:  # an image that would not decode before and does now, or the reverse
                cache.failed.pop(key, None)
            for key in data["failed"]:
                cache.entries.pop(key, None)
            cache.entries.update(data["entries"])
            cache.failed.update(data["failed"])
            cache.stamps.update(data["stamps"])
        cache.fingerprint, cache.builds = fingerprint, cache.builds + 1
        cache.write_index()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for part in folder.glob("part-r*.json"):
            part.unlink()
    if mine:
        log.info("feature cache %s: this process added %d images, %d unreadable", folder, len(entries), len(failed))
    return ClipFeatureStore(folder)
