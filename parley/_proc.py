"""Process-wide settings for the processes that run conversations: `parley run`, `parley eval`, the web chat, a
cluster's workers."""

from __future__ import annotations

import gc

_frozen = False
FULL_COLLECTION_AFTER = 100
"""Middle-generation collections between two full ones at least (CPython's default: 10), that is a thousand young
ones by default."""


def freeze_startup_objects() -> None:
    """Take what the imports created (modules, classes, schemas: most of the heap) out of the garbage
    collector's way, once per process. Otherwise each full collection during a run walks all of it again:
    measured on a 200-message run, two full collections took 0.13 s, and 0.03 s once frozen.

    Full collections also come ten times less often (`FULL_COLLECTION_AFTER`): what a few hundred live conversations hold still takes a
    full collection 0.1 to 0.25 s, with the whole process stopped (measured in each process of a cluster at 200
    conversations: six or seven such pauses each, and none once spaced out). The young collections, which free
    nearly all the cycles a run leaves, go on as before."""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, FULL_COLLECTION_AFTER)
        _frozen = True
