"""The code a benchmark's target was set against, run in the same script on the same machine.

Issue 18 asks the cluster's server CPU per message to be at most half of what one process cost when it was filed
("about 20 ms"). A figure in milliseconds moves with the machine: this one's CPU time per operation varies by a fifth
from hour to hour and more between hosts. So `bench.webload --cluster` also runs the code of that day, one process as
it was, at the same load, and holds the cluster against it as a ratio.

The baseline is the last commit before the cluster's first (`BASELINE_COMMIT`), taken from this checkout's history
with `git archive` into a temporary folder and run with this environment's packages (it needs none that are not
installed: the dependencies added since are new ones, none removed). A checkout without that commit (a shallow
clone) skips the baseline and says why.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

from bench._common import ROOT

__all__ = ["BASELINE_COMMIT", "baseline_tree"]

BASELINE_COMMIT = "62c5d059b43e34a5e5e6ca7f6e4827fda8044053"
"""The code when issue 18 was filed: the last commit before the cluster's Redis bus (da51b90)."""


def baseline_tree(folder: Path) -> tuple[Path | None, str]:
    """The baseline commit's files in `folder` (made here) and "", or None and why they could not be had."""
    done = subprocess.run(
        ["git", "archive", "--format=tar", BASELINE_COMMIT],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()
        return None, (
            f"commit {BASELINE_COMMIT[:7]} is not in this checkout ({why[-1] if why else 'git failed'}): "
            "clone with its history (not --depth) to measure the baseline"
        )
    folder.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(done.stdout)) as tar:
        # The archive is this repository's own; where Python can (3.11.4 on), paths are also held inside the folder.
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        tar.extractall(folder, **safe)
    return folder, ""
