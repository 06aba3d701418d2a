"""Storage failures, through the command line: nothing unsaved is shown as saved, a full or read-only data folder
is one line that names it and says what to do, a closed pipe ends the command quietly, and parley's data is
its owner's only whatever the umask.

A full or read-only disk is a real one: a small tmpfs mounted in a private mount namespace (`unshare`), so the
host never sees it and it vanishes with the command. That needs root (as in CI) or unprivileged user namespaces;
elsewhere those tests skip and say why. Read-only also runs as a plain user, with the folder's modes.
"""

from __future__ import annotations

import errno
import json
import os
import pty
import queue
import shlex
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from _support import team_yaml

from parley.events import event_adapter
from parley.store import Store

Write = Callable[[str, str], Path]
ROOT = Path(__file__).resolve().parents[2]
PARLEY = str(Path(sys.executable).parent / "parley")
DEADLINE_S = 120


def _env(data: Path, **extra: str) -> dict[str, str]:
    # Earlier tests in this process may have pointed tiktoken's cache elsewhere: here it is the data folder's.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.endswith("_API_KEY") and k not in ("PARLEY_DATABASE_URL", "TIKTOKEN_CACHE_DIR")
    }
    return env | {"PARLEY_DATA_DIR": str(data), "NO_COLOR": "1"} | extra


def _parley(data: Path, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PARLEY, *args],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        cwd=ROOT,
        env=_env(data),
        stdin=subprocess.DEVNULL,
        **kw,  # type: ignore[call-overload]
    )


def _namespace() -> list[str]:
    """The command prefix for a private mount namespace where a tmpfs can be mounted, or skip."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("needs unshare (util-linux) to mount a small private tmpfs as the data folder")
    prefix = (
        [unshare, "-m", "--propagation", "private"]
        if os.geteuid() == 0
        else [unshare, "-r", "-m", "--propagation", "private"]
    )
    probe = subprocess.run(
        [
            *prefix,
            "sh",
            "-c",
            "mount -t tmpfs -o size=64k tmpfs /mnt 2>&1 || mount -t tmpfs -o size=64k tmpfs /tmp",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs in a private mount namespace here (needs root or unprivileged user "
            f"namespaces): {(probe.stdout + probe.stderr).strip()}"
        )
    return prefix


def _in_tmpfs(
    data: Path,
    size: str,
    steps: list[list[str]],
    *,
    read_only_before_last: bool = False,
    keep: Path | None = None,
) -> list[str]:
    """A command line that mounts a tmpfs of `size` on `data` in a private namespace, runs `steps` there
    (all but the last must succeed; the exit code is the last one's), remounting the folder read-only before
    the last when asked, and copying the store to `keep` at the end."""
    lines = ["set -e", f"mount -t tmpfs -o size={size},mode=0700 tmpfs {shlex.quote(str(data))}"]
    lines += [shlex.join(step) + " >/dev/null 2>&1" for step in steps[:-1]]
    if read_only_before_last:
        lines.append(f"mount -o remount,ro {shlex.quote(str(data))}")
    lines += ["set +e", shlex.join(steps[-1]), "rc=$?"]
    if keep is not None:
        lines.append(f"cp {shlex.quote(str(data))}/parley.db* {shlex.quote(str(keep))}/ 2>/dev/null")
    lines.append("exit $rc")
    return [*_namespace(), "sh", "-c", "\n".join(lines)]


def _fill(folder: Path) -> None:
    """Write zeros into `folder` until its file system has no room left."""
    block = b"\0" * 65536
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(block)  # the last one writes what still fits; the next finds no room
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc


def _one_clear_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    return lines[0]


REFUND_SCRIPT = """
    roles:
      clerk:
        - tool: issue_refund
          args: {order_id: 1, amount: 1.0, reason: goodwill}
        - "REFUND HANDLED"
        - "MORE WORDS"
"""


def test_a_disk_that_fills_mid_run_shows_nothing_unsaved_and_never_says_saved(
    write: Write, tmp_path: Path
) -> None:
    """The data folder fills up while the run waits for a human's approval. The decision cannot be stored:
    it is not shown, nor is anything after it; the run ends with the error (exit 1), and `saved as` is not
    printed. What was shown before is exactly what the store holds."""
    team = write("team.yaml", team_yaml(roles=("clerk",), max_turns=3, tools={"clerk": ["issue_refund"]}))
    script = write("s.yaml", REFUND_SCRIPT)
    data, keep = tmp_path / "data", tmp_path / "keep"
    data.mkdir()
    keep.mkdir()
    command = _in_tmpfs(
        data, "8m", [[PARLEY, "run", str(team), "Refund order 1", "--model", f"scripted:{script}"]], keep=keep
    )
    controller, terminal = pty.openpty()  # a person at a terminal: approvals wait for their answer
    out = (tmp_path / "out.txt").open("w+")
    proc = subprocess.Popen(
        command, stdin=terminal, stdout=out, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=_env(data)
    )
    os.close(terminal)
    lines: queue.Queue[str | None] = queue.Queue()

    def read_errors() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read_errors, daemon=True).start()
    err: list[str] = []
    try:
        while True:
            line = lines.get(timeout=DEADLINE_S)
            assert line is not None, "the run ended before asking for approval:\n" + "".join(err)
            err.append(line)
            if line.startswith("approve clerk's call to issue_refund"):
                break
        _fill(Path(f"/proc/{proc.pid}/root{data}"))  # the disk fills up while the run waits
        os.write(controller, b"n\n")
        proc.wait(timeout=DEADLINE_S)
        while (line := lines.get(timeout=DEADLINE_S)) is not None:
            err.append(line)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)
    out.seek(0)
    shown, errors = out.read(), "".join(err)
    out.close()
    assert proc.returncode == 1, (shown, errors)
    assert "Traceback" not in shown + errors, errors
    assert "saved as" not in errors, errors
    problem = (
        f"cannot write to {data}/parley.db: the disk is full — free some space there or set PARLEY_DATA_DIR"
    )
    assert problem in errors, errors
    assert "asks to call issue_refund" in shown, shown  # stored before the disk filled, so shown
    assert "issue_refund denied" not in shown, shown  # the decision could not be stored: not shown
    assert "REFUND HANDLED" not in shown and "MORE WORDS" not in shown, shown
    assert "saving the conversation failed" in shown and "what was not saved is not shown" in shown, shown

    # What the store holds is what was shown: up to the approval request, and nothing after.
    copy = next(keep.glob("parley.db"), None)
    assert copy is not None, "the store was not copied out of the namespace"
    stored = _stored_events(copy)
    assert "approval_request" in [e.type for e in stored], [e.type for e in stored]
    assert not {"approval_decision", "result"} & {e.type for e in stored}, [e.type for e in stored]


def _stored_events(db: Path) -> list[object]:
    import asyncio

    async def read() -> list[object]:
        store = await Store.open(f"sqlite+aiosqlite:///{db}")
        try:
            [thread] = await store.list_threads("local")
            return [event_adapter.validate_python(r.payload) for r in await store.events(thread.id)]
        finally:
            await store.close()

    return asyncio.run(read())


def test_a_full_data_folder_at_the_start_is_one_line_that_says_what_to_do(
    write: Write, tmp_path: Path
) -> None:
    team = write("team.yaml", team_yaml(roles=("alpha",), max_turns=1))
    script = write("s.yaml", 'roles: {alpha: ["hello"]}')
    data = tmp_path / "data"
    data.mkdir()
    run = [PARLEY, "run", str(team), "Go", "--model", f"scripted:{script}"]
    filler = ["sh", "-c", f"cat /dev/zero > {shlex.quote(str(data / 'filler'))} 2>/dev/null; true"]
    # A first run makes the store (and the caches); then the disk fills up; then the next run.
    done = subprocess.run(
        _in_tmpfs(data, "8m", [run, filler, run]),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=_env(data),
        stdin=subprocess.DEVNULL,
        timeout=DEADLINE_S,
    )
    line = _one_clear_line(done.stderr)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert line.startswith(
        f"parley: error: cannot write to {data}/parley.db: the disk is full — free some space "
        "there or set PARLEY_DATA_DIR to another folder"
    ), line
    assert done.stdout == "", done.stdout  # nothing ran, so nothing is shown


@pytest.mark.parametrize("existing", [False, True], ids=["empty", "with-a-store"])
def test_a_read_only_data_folder_is_one_line_that_says_what_to_do(
    write: Write, tmp_path: Path, existing: bool
) -> None:
    """Every command that needs the store says, in one line, which file cannot be written and what to do
    (exit 2); `--no-save` still runs the team."""
    team = write("team.yaml", team_yaml(roles=("alpha",), max_turns=1))
    script = write("s.yaml", 'roles: {alpha: ["hello", "hello again"]}')
    data = tmp_path / "data"
    data.mkdir()
    run = [PARLEY, "run", str(team), "Go", "--model", f"scripted:{script}"]
    commands = {
        "run": run,
        "audit": [PARLEY, "audit", "0" * 32],
        "users": [PARLEY, "users", "add", "dana"],
        "ui": [PARLEY, "ui"],
        "no-save": [*run, "--no-save"],
    }
    for name, command in commands.items():
        if os.geteuid() == 0:  # root ignores modes: a read-only file system it is
            done = subprocess.run(
                _in_tmpfs(data, "8m", [run, command] if existing else [command], read_only_before_last=True),
                capture_output=True,
                text=True,
                cwd=ROOT,
                env=_env(data),
                stdin=subprocess.DEVNULL,
                timeout=DEADLINE_S,
            )
            why = "the folder is on a read-only file system"
        else:
            fresh = tmp_path / f"data-{name}"
            fresh.mkdir()
            if existing:
                assert _parley(fresh, *run).returncode == 0
            fresh.chmod(0o500)
            try:
                done = _parley(fresh, *command)
            finally:
                fresh.chmod(0o700)
            data, why = fresh, "the folder is read-only for this user"
        if name == "no-save":
            assert done.returncode == 0, (done.stdout, done.stderr)
            assert "hello" in done.stdout and "Traceback" not in done.stderr, done.stderr
            continue
        line = _one_clear_line(done.stderr)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert line.startswith(
            f"parley: error: cannot write to {data}/parley.db: {why} — make it writable or set "
            "PARLEY_DATA_DIR to another folder"
        ), (name, line)


def test_a_data_folder_that_cannot_be_made_is_one_line(write: Write, tmp_path: Path) -> None:
    team = write("team.yaml", team_yaml(roles=("alpha",), max_turns=1))
    script = write("s.yaml", 'roles: {alpha: ["hello"]}')
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    done = _parley(blocker / "parley", "run", str(team), "Go", "--model", f"scripted:{script}")
    line = _one_clear_line(done.stderr)
    assert done.returncode == 2
    assert (
        line
        == f"parley: error: {blocker / 'parley'}: Not a directory — set PARLEY_DATA_DIR to another folder"
    ), line


def test_a_closed_pipe_ends_the_command_quietly(write: Write, tmp_path: Path) -> None:
    """`parley run --json | head -1`: the reader goes away while parley still has a lot to say. The run stops,
    is saved, and the command ends with 141 (as a shell reports a command ended by SIGPIPE), without a word
    about the pipe on stderr."""
    team = write("team.yaml", team_yaml(roles=("alpha", "beta"), max_turns=8))
    # far more than a pipe holds (64 KiB): parley is still writing when the reader leaves
    long = "word " * 20_000
    script = write(
        "s.yaml", json.dumps({"roles": {"alpha": [long, "x", "y", "z"], "beta": [long, "x", "y", "z"]}})
    )
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [PARLEY, "run", str(team), "Go", "--model", f"scripted:{script}", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env=_env(data),
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert b'"run_started"' in first
    proc.stdout.close()  # what `head -1` does after its line
    try:
        err = proc.stderr.read().decode()
        proc.wait(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err and "Broken" not in err and "Exception" not in err, err
    assert proc.returncode == 141, err
    assert [line for line in err.splitlines() if not line.startswith("parley: saved as ")] == [], err


def test_parleys_data_is_its_owners_only_whatever_the_umask(write: Write, tmp_path: Path) -> None:
    """The store (with its -wal and -shm files), the sign-in secret, the caches and every folder in the data
    folder are 0600 and 0700 even under `umask 000`; `parley doctor` says so."""
    team = write("team.yaml", team_yaml(roles=("alpha",), max_turns=2, tools={"alpha": ["write_file"]}))
    script = write(
        "s.yaml",
        """
        roles:
          alpha:
            - tool: write_file
              args: {path: notes/a.md, content: hello}
            - "done"
    """,
    )
    data = tmp_path / "data"
    env = _env(data)

    def under_umask_000(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", "-c", 'umask 000 && exec "$@"', "sh", *command],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=DEADLINE_S,
        )

    done = under_umask_000(PARLEY, "run", str(team), "Write a note", "--model", f"scripted:{script}")
    assert done.returncode == 0, done.stderr
    secret = under_umask_000(
        sys.executable, "-c", "from parley._ui import auth_secret; print(len(auth_secret()))"
    )
    assert secret.returncode == 0 and int(secret.stdout) > 20, secret.stderr
    # The store is held open by the web chat while it runs: its -wal and -shm files exist then.
    held = under_umask_000(
        sys.executable,
        "-c",
        """if True:
        import asyncio, os
        from parley.store import Store
        async def main():
            store = await Store.open()
            await store.create_user("dana", "a long enough password")
            print(sorted(os.listdir(os.environ["PARLEY_DATA_DIR"])))
            modes = {n: oct(os.stat(os.path.join(os.environ["PARLEY_DATA_DIR"], n)).st_mode & 0o777)
                     for n in os.listdir(os.environ["PARLEY_DATA_DIR"]) if n.startswith("parley.db")}
            print(modes)
            await store.close()
        asyncio.run(main())
    """,
    )
    assert held.returncode == 0, held.stderr
    assert "parley.db-wal" in held.stdout and "0o644" not in held.stdout and "0o666" not in held.stdout, (
        held.stdout
    )
    assert "'0o600'" in held.stdout, held.stdout

    names = {p.name for p in data.iterdir()}
    assert {"parley.db", "auth_secret", "tiktoken", "workspaces"} <= names, names
    workspaces = data / "workspaces"
    loose = []
    for path in [data, *data.rglob("*")]:
        if workspaces in path.parents and path.parent != workspaces:
            continue  # the conversation's own files, behind its 0700 folder
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode != (0o700 if path.is_dir() else 0o600):
            loose.append(f"{path.relative_to(data.parent)} {mode:04o}")
    assert loose == [], loose
    doctor = _parley(data, "doctor")
    assert "yes  data folder private" in doctor.stdout, doctor.stdout


def test_doctor_says_which_guarantees_hold_and_never_shows_a_password(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = _parley(data, "doctor")
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stdout.splitlines()
    for what in ("data folder private", "store reachable", "web chat login", "run_python"):
        assert any(what in line and line.startswith(("  yes  ", "  NO   ")) for line in lines), (
            what,
            done.stdout,
        )
    assert "no users: local mode" in done.stdout
    assert done.returncode == (0 if not any(line.startswith("  NO ") for line in lines) else 1), done.stdout

    env = _env(data, PARLEY_DATABASE_URL="postgresql://dana:s3cret-pw@127.0.0.1:1/parley")
    down = subprocess.run(
        [PARLEY, "doctor"],
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert down.returncode == 1, down.stdout
    assert "s3cret-pw" not in down.stdout + down.stderr
    assert (
        "NO   store reachable — cannot open database postgresql://dana:***@127.0.0.1:1/parley" in down.stdout
    )
    assert "NO   web chat login — unknown" in down.stdout
