"""Process-wide settings for the processes that run conversations: `parley run`, `parley eval`, the web chat."""

from __future__ import annotations

import gc

_frozen = False


def freeze_startup_objects() -> None:
    """Take what the imports created (modules, classes, schemas: most of the heap) out of the garbage
    collector's way, once per process. Otherwise each full collection during a run walks all of it again:
    measured on a 200-message run, two full collections took 0.13 s, and 0.03 s once frozen."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True
