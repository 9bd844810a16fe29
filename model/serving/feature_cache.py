"""Image features for the worker: bytes from Redis -> checked image -> adapter output, cached by image key.

The key is the sha256 of the bytes (checked when the bytes are read), so a cached entry can never be stale:
a follow-up turn about the same photo runs neither CLIP nor the adapter again.
"""

from __future__ import annotations

from collections import OrderedDict

import redis
import torch

from model.images import ImageError, load_image
from model.protocol import ProtocolError, image_key_for


class ImageFeatureCache:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._items: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: torch.Tensor) -> None:
        if self.capacity <= 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def image_features(model, client: redis.Redis, keys: list[str], cache: ImageFeatureCache) -> list[torch.Tensor]:
    """One [N, H] tensor per key, in order; misses are fetched together and encoded in one batch.
    Raises ProtocolError(image_missing | bad_image)."""
    found = {k: cache.get(k) for k in dict.fromkeys(keys)}
    missing = [k for k, v in found.items() if v is None]
    cache.hits += len(keys) - sum(1 for k in keys if k in missing)
    cache.misses += len(missing)
    if missing:
        blobs = client.mget(missing)
        images = []
        for k, data in zip(missing, blobs, strict=True):
            if data is None:
                raise ProtocolError("image_missing", f"image {k} has expired or was never stored")
            if image_key_for(data) != k:  # the cache trusts the key to name the content: make it true
                raise ProtocolError("bad_image", f"image {k}: the stored bytes do not hash to the key (sha256)")
            try:
                images.append(load_image(data))
            except ImageError as exc:
                raise ProtocolError("bad_image", f"image {k}: {exc.message}") from exc
        with torch.inference_mode():
            encoded = model.encode_images(images)  # [M, N, H]
        for k, feats in zip(missing, encoded, strict=True):
            found[k] = feats
            cache.put(k, feats)
    return [found[k] for k in keys]
