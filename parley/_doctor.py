"""`parley doctor`: which of parley's guarantees hold on this machine, and how to enable the others."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

from . import sandbox
from .paths import data_dir

__all__ = ["checks", "doctor"]

Check = tuple[str, bool, str]
"""(what is guaranteed, whether it holds here, the detail: why, or how to make it hold)."""

_MAX_LISTED = 5
_MAX_WALKED = 20_000


def doctor() -> int:
    """Print one line per guarantee; 0 when all hold, 1 otherwise."""
    rows = checks()
    print("parley doctor: which guarantees hold on this machine")
    for name, holds, detail in rows:
        print(f"  {'yes' if holds else 'NO '}  {name} — {detail}")
    failing = [name for name, holds, _ in rows if not holds]
    if failing:
        print(f"{len(failing)} of {len(rows)} do not hold: {', '.join(failing)}")
        return 1
    print(f"all {len(rows)} hold")
    return 0


def checks() -> list[Check]:
    rows = _sandbox()
    store_rows, file = asyncio.run(_store())  # first: opening the store makes its file, if missing
    folder, folder_row = _data_folder()
    rows += [folder_row, *store_rows]
    if (
        file is not None
        and file.exists()
        and (folder is None or folder.resolve() not in file.resolve().parents)
    ):
        mode = file.stat().st_mode  # outside the data folder: its own mode is all that keeps it private
        rows.append(
            (
                "store file private",
                not mode & 0o077,
                f"{file} is {_mode(mode)}" + (f": chmod 600 {file}" if mode & 0o077 else ""),
            )
        )
    return rows


def _sandbox() -> list[Check]:
    """The run_python sandbox's own account of what it can enforce here."""
    try:
        found = sandbox.guarantees()
    except Exception as exc:  # a broken check is a guarantee nobody can vouch for
        return [("run_python sandbox", False, f"checking it failed: {type(exc).__name__}: {exc}")]
    return [
        (name if str(name).startswith("run_python") else f"run_python: {name}", bool(holds), str(detail))
        for name, holds, detail in found
    ]


def _data_folder() -> tuple[Path | None, Check]:
    """The data folder 0700 and owned by this user; its files 0600 and its folders 0700 (a conversation's
    own files in workspaces/ are behind those folders and keep the modes their tools gave them)."""
    name = "data folder private"
    try:
        folder = data_dir()
    except OSError as exc:
        return None, (
            name,
            False,
            f"cannot create it: {exc.strerror}: {exc.filename} — make its parent writable "
            "or set PARLEY_DATA_DIR to another folder",
        )
    st = folder.stat()
    if st.st_uid != os.geteuid():
        return folder, (
            name,
            False,
            f"{folder} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()}): "
            "set PARLEY_DATA_DIR to a folder of your own",
        )
    if st.st_mode & 0o077:
        return folder, (name, False, f"{folder} is {_mode(st.st_mode)}: chmod 700 {folder}")
    loose: list[str] = []
    count = 0
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        for entry in [*dirs, *files]:
            count += 1
            try:
                mode = (here / entry).lstat().st_mode
            except OSError:
                continue
            if stat.S_ISLNK(mode):
                continue
            if mode & 0o077:
                loose.append(f"{(here / entry).relative_to(folder)} ({_mode(mode)})")
        if here == folder / "workspaces":
            dirs[:] = []  # each conversation's folder is made 0700; what its tools write inside is theirs
        if count > _MAX_WALKED:
            break
    if loose:
        shown = ", ".join(loose[:_MAX_LISTED]) + (
            f" and {len(loose) - _MAX_LISTED} more" if len(loose) > _MAX_LISTED else ""
        )
        return folder, (name, False, f"others may read in {folder}: {shown} — chmod -R go-rwx {folder}")
    return folder, (
        name,
        True,
        f"{folder} is 0700 and owned by this user; its files are 0600, its folders 0700",
    )


async def _store() -> tuple[list[Check], Path | None]:
    """The store answers (its URL without a password), and the web chat's login mode, read from its users."""
    from .store import Store, StoreError, default_url, normalise_url, os_problem, redact, sqlite_file

    unknown = ("web chat login", False, "unknown: the store, which holds the users, does not answer")
    try:
        url = default_url()
    except OSError as exc:
        return [("store reachable", False, f"no store: {os_problem(exc)}"), unknown], None
    try:
        file = sqlite_file(normalise_url(url))
    except Exception:
        file = None  # Store.open says what is wrong with the URL
    try:
        store = await Store.open(url, timeout_s=5)
        try:
            users = await store.count_users()
        finally:
            await store.close()
    except StoreError as exc:
        return [("store reachable", False, str(exc)), unknown], file
    rows: list[Check] = [("store reachable", True, f"{redact(url)} answers")]
    if users:
        rows.append(("web chat login", True, f"{users} user{'s' if users != 1 else ''}: everyone logs in"))
    else:
        rows.append(
            (
                "web chat login",
                True,
                "no users: local mode, no login, and `parley ui` serves only loopback "
                "addresses (`parley users add NAME` makes everyone log in)",
            )
        )
    return rows, file


def _mode(mode: int) -> str:
    return f"{stat.S_IMODE(mode):04o}"
