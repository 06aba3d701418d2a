"""The SQLite file on disk: kept private to its owner, and its failures told in one line a user can act on.

A full disk, a read-only folder or a missing folder all reach parley as SQLite's terse "disk I/O error" or
"unable to open database file". The folder itself says which it is, so ask it, and say what to do.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from sqlalchemy.engine import URL

from ..paths import data_dir_path

__all__ = ["os_problem", "prepare_file", "sqlite_file", "storage_problem"]

# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 3, 8, 10, 13, 14
_DISK_CODES = {_SQLITE_PERM, _SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN}
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.EFBIG}
_LOW_SPACE = 1 << 20
"""Less free space than this in the folder of a failed write: the disk is full (SQLite grows in pages)."""


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL, or None (another database, in memory, or a `file:` URI)."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def prepare_file(path: Path) -> None:
    """Create the database file readable by its owner only (SQLite gives its -wal and -shm files the mode
    of the database file), or make an existing one so. OSError if the file cannot be created."""
    if not path.parent.is_dir():
        return  # SQLite's own "unable to open database file" says it, as it always has
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        pass
    else:
        os.fchmod(fd, 0o600)  # exactly, whatever the umask took away
        os.close(fd)
    # Files made before parley kept them private, or while a permissive umask was in force.
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            st = each.stat()
            if st.st_mode & 0o077 and st.st_uid == os.geteuid():
                each.chmod(0o600)
        except OSError:
            pass  # not there (yet), or not ours to change


def storage_problem(path: Path, exc: BaseException) -> str | None:
    """One line for a failure to use the SQLite file `path` that comes from its disk or folder:
    `cannot write to PATH: WHAT — WHAT TO DO`. None when the error is about something else."""
    code, err = _codes(exc)
    if code is None and err is None:
        return None
    if code == _SQLITE_FULL or err in (errno.ENOSPC, errno.EDQUOT):
        what, fix = "the disk is full", "free some space there"
    elif code in _DISK_CODES or err in _DISK_ERRNOS:
        found = _inspect(path, code)
        if found is None:
            return None
        what, fix = found
    else:
        return None
    return f"cannot write to {path}: {what} — {fix} or {_elsewhere(path)}"


def _codes(exc: BaseException) -> tuple[int | None, int | None]:
    """SQLite's primary result code and the OS errno found on `exc` or the errors it wraps."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        cur = todo.pop()
        if cur is None or id(cur) in seen:
            continue
        seen.add(id(cur))
        code = getattr(cur, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF, None
        if isinstance(cur, OSError) and cur.errno is not None:
            return None, cur.errno
        orig = getattr(cur, "orig", None)
        todo += [orig if isinstance(orig, BaseException) else None, cur.__cause__, cur.__context__]
    return None, None


def _inspect(path: Path, code: int | None) -> tuple[str, str] | None:
    """Ask the folder why a write failed: read-only, not ours, full or missing."""
    folder = path.parent
    if not folder.is_dir():
        return None  # SQLite's own message says the file cannot be opened
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    if st.f_flag & os.ST_RDONLY:
        return "the folder is on a read-only file system", "make it writable"
    if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        return "the folder is read-only for this user", "make it writable"
    if st.f_bavail * st.f_frsize < _LOW_SPACE:
        return "the disk is full", "free some space there"
    if code == _SQLITE_READONLY:
        return "the database file is read-only", "make it writable"
    return None


def _elsewhere(path: Path) -> str:
    """How to point parley at another place for its store."""
    if os.environ.get("PARLEY_DATABASE_URL", "").strip():
        return "set PARLEY_DATABASE_URL to another database"
    return "set PARLEY_DATA_DIR to another folder" if _in_data_folder(path) else "use another database file"


def os_problem(exc: OSError) -> str:
    """An OSError that reached a command, in one line: the path, what is wrong, and, when the path is in
    parley's data folder, what to do."""
    where = f"{os.fsdecode(exc.filename)}: " if exc.filename else ""
    what = exc.strerror or str(exc)
    writing = exc.errno in _DISK_ERRNOS and exc.errno != errno.ENOENT
    text = f"cannot write to {where}{what}" if writing else f"{where}{what}"
    if exc.filename and _in_data_folder(Path(os.fsdecode(exc.filename))):
        fix = (
            "free some space there or "
            if exc.errno in (errno.ENOSPC, errno.EDQUOT)
            else "make it writable or "
            if writing
            else ""
        )
        text += f" — {fix}set PARLEY_DATA_DIR to another folder"
    return text


def _in_data_folder(path: Path) -> bool:
    data = data_dir_path().resolve()  # not made: it may be what cannot be written
    path = path.resolve()
    return path == data or data in path.parents
