"""The frozen vision tower's feature cache (training/feature_store.py): keyed by path, trusted only for the file
that was read."""

import json
import os

import pytest
import torch
from accelerate import Accelerator
from PIL import Image

from model.checkpoint import build_in_memory
from model.config import preset_config
from training.data import ClipPreprocess, read_image
from training.feature_store import INDEX, fill_cache


def _picture(path, colour, size=(40, 30)):
    Image.new("RGB", size, colour).save(path)


@pytest.fixture(scope="module")
def model():
    return build_in_memory(preset_config("tiny"), device="cpu", dtype=torch.float32)


def _features(model, path):
    with torch.no_grad():
        return model.vision(ClipPreprocess(model.config)(read_image(path))[None])[0].to(torch.float16)


def test_an_image_written_again_at_its_path_is_computed_again(tmp_path, model):
    """A world drawn anew writes different pictures under the same names: the cache must not serve the old ones'
    features (it did, and a recipe's stage 2 trained on them: 0.61 in all against 0.91)."""
    root, cache = tmp_path / "images", tmp_path / "cache"
    root.mkdir()
    _picture(root / "a.png", (255, 0, 0))
    _picture(root / "b.png", (0, 0, 255))
    accelerator = Accelerator(cpu=True)
    store = fill_cache(cache, ["a.png", "b.png"], root, model, accelerator, batch_size=4)
    shard_b = store.entries["b.png"]
    old_a = store.get("a.png")
    assert torch.equal(old_a, _features(model, root / "a.png"))

    _picture(root / "a.png", (0, 200, 0))  # the same name, another picture
    stat = (root / "a.png").stat()
    os.utime(root / "a.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))  # even within the clock's resolution
    store = fill_cache(cache, ["a.png", "b.png"], root, model, accelerator, batch_size=4)
    assert torch.equal(store.get("a.png"), _features(model, root / "a.png"))
    assert not torch.equal(store.get("a.png"), old_a)
    assert store.entries["b.png"] == shard_b  # the unchanged one is not computed again

    (root / "b.png").write_bytes(b"not a picture")  # and one that breaks is reported, not served
    store = fill_cache(cache, ["a.png", "b.png"], root, model, accelerator, batch_size=4)
    assert "b.png" in store.failed and store.get("b.png") is None
    _picture(root / "b.png", (0, 0, 255), size=(30, 40))  # mended: read again
    store = fill_cache(cache, ["a.png", "b.png"], root, model, accelerator, batch_size=4)
    assert "b.png" not in store.failed and torch.equal(store.get("b.png"), _features(model, root / "b.png"))


def test_an_index_from_before_the_stamps_is_not_trusted(tmp_path, model):
    root, cache = tmp_path / "images", tmp_path / "cache"
    root.mkdir()
    _picture(root / "a.png", (255, 0, 0))
    accelerator = Accelerator(cpu=True)
    fill_cache(cache, ["a.png"], root, model, accelerator, batch_size=4)
    index = json.loads((cache / INDEX).read_text())
    index.pop("stamps")
    (cache / INDEX).write_text(json.dumps(index))
    _picture(root / "a.png", (0, 200, 0))
    store = fill_cache(cache, ["a.png"], root, model, accelerator, batch_size=4)
    assert torch.equal(store.get("a.png"), _features(model, root / "a.png"))
    assert store.builds == 2
