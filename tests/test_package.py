"""parley as an installed package: the wheel holds the shipped teams, tools, prompts, suites and web chat, and
`parley init`, `parley teams`, `parley run`, `parley eval` and `parley ui` work from a folder outside any checkout.

The wheel is built from this checkout and installed into a fresh virtual environment in a temporary folder.
Its dependencies come from the test's own environment (a path entry, so nothing is downloaded); parley itself
comes only from the wheel: the test checks that the parley the new environment runs is the installed one."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hatchling") is None,
    reason="building the wheel needs hatchling (`make install` installs it with the dev extra)",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-build-isolation",
            "--no-deps",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=300,
        env=_env(),
    )
    (found,) = out.glob("parley-*.whl")
    return found


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment holding the wheel; the test's own dependencies reachable by a path entry."""
    home = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True, timeout=120)
    site = Path(
        subprocess.run(
            [str(home / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # A plain path line: the folder's own .pth files (this checkout's editable install among them) are not read.
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(home / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        timeout=300,
        env=_env(),
    )
    return home


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A working folder outside the checkout."""
    folder = tmp_path / "work"
    folder.mkdir()
    assert not folder.resolve().is_relative_to(ROOT)
    return folder


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PARLEY_", "CHAINLIT_")) and k != "PYTHONPATH"
    }
    return env | extra


def parley(venv: Path, cwd: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "parley"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(PARLEY_DATA_DIR=str(cwd.parent / "data")),
        stdin=subprocess.DEVNULL,
    )


def test_the_wheel_carries_what_parley_ships(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for shipped in (
        "parley/_shipped/app.py",
        "parley/_shipped/chainlit.md",
        "parley/_shipped/.chainlit/config.toml",
        "parley/_shipped/public/parley.js",
        "parley/_shipped/teams/content-studio.yaml",
        "parley/_shipped/prompts/researcher.md",
        "parley/_shipped/tools/docs.py",
        "parley/_shipped/tools/kb/refund-policy.md",
        "parley/_shipped/evals/content.yaml",
    ):
        assert shipped in names, f"{shipped} is not in the wheel"
    assert not [n for n in names if "__pycache__" in n or n.startswith("parley/_shipped/public/avatars/")]


def test_init_then_teams_run_and_eval_work_from_an_installed_package(venv: Path, outside: Path) -> None:
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import parley; print(parley.__file__)"],
        cwd=outside,
        capture_output=True,
        text=True,
        check=True,
        env=_env(),
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), (
        f"the new environment runs parley from {where}, not from the wheel"
    )

    made = parley(venv, outside, "init", "proj")
    assert made.returncode == 0, made.stderr
    assert "teams/my-team.yaml" in made.stdout and "cd proj" in made.stdout
    proj = outside / "proj"
    again = parley(venv, outside, "init", "proj")
    assert again.returncode != 0 and "never overwrites" in again.stderr

    listed = parley(venv, proj, "teams")
    assert listed.returncode == 0, listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line.strip()]
    assert names[0] == "my-team" and "content-studio" in names and "customer-support" in names

    run = parley(venv, proj, "run", "my-team", "Write a short note on our refund policy",
                 "--model", "scripted:evals/scripts/note.yaml")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "word_count" in run.stdout and "APPROVE" in run.stdout

    evaluated = parley(venv, proj, "eval", "evals/smoke.yaml", "--out", "out")
    assert evaluated.returncode == 0, evaluated.stdout + evaluated.stderr
    assert "100% passed (1/1)" in evaluated.stdout and (proj / "out" / "report.html").is_file()

    # A shipped team from a folder that is no project: its prompts and tools come from the package.
    script = outside / "studio.yaml"
    script.write_text(
        'roles:\n  researcher: ["Refunds: 30 days."]\n  writer: ["Refunds take 30 days."]\n  editor: ["Fine. APPROVE"]\n',
        encoding="utf-8",
    )
    shipped = parley(
        venv, outside, "run", "content-studio", "Write about refunds", "--model", f"scripted:{script}"
    )
    assert shipped.returncode == 0, shipped.stderr
    assert "editor: Fine. APPROVE" in shipped.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ui(venv: Path, outside: Path) -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [str(venv / "bin" / "parley"), "ui", "--port", str(port)],
        cwd=outside,
        env=_env(PARLEY_DATA_DIR=str(outside.parent / "data")),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        print(f"--- parley ui (shown if the test failed):\n{out}")


def test_parley_ui_answers_a_page_load_from_an_installed_package(ui: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            page = httpx.get(ui + "/", timeout=5)
            logo = httpx.get(ui + "/logo?theme=light", timeout=5)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "parley ui never answered"
            time.sleep(0.25)  # the server is starting: nothing to wait on but its port
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert (
        logo.status_code == 200 and b"parley" in logo.content.lower()
    )  # parley's own logo, from the package
