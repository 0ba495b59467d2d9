"""Filling a cache folder so that several processes filling it at once never see it half-written."""

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def building(folder: Path) -> Iterator[Path]:
    """Yield a private folder beside `folder` to write into; on success it becomes `folder` by one
    rename. When another process published `folder` first, this one's copy is discarded (the
    contents are the same by construction: the folder's name is their key). On error nothing is
    published."""
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
        partial.rename(folder)
    except OSError:
        if not folder.is_dir():
            raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
