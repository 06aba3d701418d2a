"""Stopping a run through the Python API, in a program that sets up no logging: nothing but its own output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = textwrap.dedent("""
    import asyncio, sys
    from parley import Conversation

    async def main() -> None:
        conv = Conversation("content-studio", model="scripted:" + sys.argv[1])
        for stop_on in ("chunk", "message"):  # in the middle of a model call, and between turns
            run = conv.start("Plan the launch")
            async for ev in run:
                if ev.type == stop_on:
                    run.stop()
            print(run.result.stop_reason)
        await conv.close()

    asyncio.run(main())
""")


def test_stopping_through_the_python_api_prints_no_traceback(tmp_path: Path) -> None:
    script = tmp_path / "script.yaml"
    words = " ".join(f"w{i}" for i in range(30))
    script.write_text(
        json.dumps(
            {"roles": {r: [f"{r}: {words}"] * 4 for r in ("researcher", "writer", "editor")}, "delay_s": 1.5}
        ),
        encoding="utf-8",
    )
    program = tmp_path / "stop.py"
    program.write_text(PROGRAM, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "OPENAI_", "ANTHROPIC_"))}
    done = subprocess.run(
        [sys.executable, str(program), str(script)],
        cwd=ROOT,
        env=env | {"PARLEY_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stdout.split()) == (0, ["stopped", "stopped"]), done.stderr
    assert done.stderr == ""  # before: autogen_core's "Error processing publish message ..." and a traceback
