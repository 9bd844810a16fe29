"""Folders that appear whole or not at all."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replaced_atomically(dest: str | Path) -> Iterator[Path]:
    """Yields an empty sibling folder `<dest>.partial` to write into; when the block ends without an error it
    replaces `dest` with one rename, so a reader (or a rerun of the recipe) never sees half a folder. On an
    error the partial folder is removed and `dest` is left as it was."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
