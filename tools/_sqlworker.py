"""The process one sql_query statement runs in, so that a statement can be killed.

SQLite's progress handler, the usual way to stop a query, is only consulted between steps of
SQLite's virtual machine: one call of a built-in function (printf with a huge precision, instr
over a megabyte of text) runs to its end however long it takes. So tools/data.py starts this
file as a script (`python -I -S -B _sqlworker.py`) for each query, and kills it when the query
runs past its wall-clock limit or the call is cancelled.

Protocol: one JSON request on stdin (see `main`); the worker writes the line `started` once the
database is open and confined (the parent's clock for the query starts there, so a slow start on
a busy machine does not eat into the query's time), then one JSON result line.

Standard library only, and nothing from parley: `-I -S` keeps site-packages and the
environment out of this process.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the worker starts once per query: it imports only what it runs
    from collections.abc import Callable, Sequence
    from typing import Any

    Authorizer = Callable[[int, Any, Any, Any, Any], int]

STARTED = b"started\n"
HEAP_LIMIT_MB = 256
"""What SQLite may allocate for one query (sorts, DISTINCT, recursive CTEs): past it the query
fails with "out of memory" instead of growing until the machine runs out."""
ADDRESS_SPACE_MB = 1024
"""The whole worker's address space, a backstop behind HEAP_LIMIT_MB."""
MAX_VALUE_BYTES = 1_000_000
"""The longest text or blob a query may build (SQLITE_LIMIT_LENGTH)."""

# Limits that bound what one statement can ask for; the defaults allow gigabytes or attachments.
LIMITS = {
    sqlite3.SQLITE_LIMIT_LENGTH: MAX_VALUE_BYTES,
    sqlite3.SQLITE_LIMIT_SQL_LENGTH: 100_000,
    sqlite3.SQLITE_LIMIT_ATTACHED: 0,
    sqlite3.SQLITE_LIMIT_LIKE_PATTERN_LENGTH: 1_000,
    sqlite3.SQLITE_LIMIT_WORKER_THREADS: 0,
}

_UNBOUNDED_TEXT = (
    "its width or precision can ask for gigabytes of text, and one call cannot be interrupted; "
    "round numbers with ROUND(x, 2) and join text with ||"
)
DENIED_FUNCTIONS = {
    "printf": _UNBOUNDED_TEXT,
    "format": _UNBOUNDED_TEXT,
    "zeroblob": "it makes blobs of any size; write a small blob as a literal such as X'0000'",
    "randomblob": "it makes blobs of any size; use random() for a random number",
    "load_extension": "it loads native code into the database engine",
    "fts3_tokenizer": "it can point the database engine at native code",
}
"""Functions the authorizer refuses, with why and what to use instead (shown to the agent)."""

# Introspection pragmas whose argument is a table or index name: they only read the schema.
_READ_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "foreign_key_list"}
_READ_ACTIONS = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE}
_WRITE_ACTIONS = ("INSERT", "UPDATE", "DELETE", "ATTACH", "DETACH", "ALTER_TABLE", "REINDEX", "ANALYZE",
                  "TRANSACTION", "SAVEPOINT", "PRAGMA", "CREATE_INDEX", "CREATE_TABLE",
                  "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE", "CREATE_TEMP_TRIGGER",
                  "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW", "CREATE_VTABLE",
                  "DROP_INDEX", "DROP_TABLE", "DROP_TEMP_INDEX", "DROP_TEMP_TABLE",
                  "DROP_TEMP_TRIGGER", "DROP_TEMP_VIEW", "DROP_TRIGGER", "DROP_VIEW",
                  "DROP_VTABLE")  # fmt: skip
_ACTION_NAMES = {getattr(sqlite3, f"SQLITE_{n}"): n.replace("_", " ") for n in _WRITE_ACTIONS}


def authorizer(denied: list[list[str]]) -> Authorizer:
    """Allow reading and the listed functions only; every refusal is appended to `denied` as
    [kind, name] ("write", "INSERT") or ("function", "printf") so the parent can explain it."""

    def authorize(action: int, arg1: str | None, arg2: str | None, _db: str | None, _src: str | None) -> int:
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_FUNCTION:
            name = (arg2 or "").lower()
            if name in DENIED_FUNCTIONS:
                denied.append(["function", name])
                return sqlite3.SQLITE_DENY
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and arg1 in _READ_PRAGMAS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
            # SQLite reports this when a table-valued pragma (pragma_table_info('t')) loads the schema.
            # A real write to sqlite_master is impossible anyway: the file is opened read-only and
            # writable_schema is not an allowed pragma.
            return sqlite3.SQLITE_OK
        label = _ACTION_NAMES.get(action, f"operation {action}")
        denied.append(["write", f"PRAGMA {arg1}" if action == sqlite3.SQLITE_PRAGMA else label])
        return sqlite3.SQLITE_DENY

    return authorize


def open_confined(db: str) -> sqlite3.Connection:
    """The database, read-only, with SQLite's own limits set before any query text is seen."""
    conn = sqlite3.connect(f"{db}?mode=ro", uri=True)
    for limit, value in LIMITS.items():
        conn.setlimit(limit, value)
    # Set before the authorizer exists (it refuses pragmas). Temporary tables and sorts stay in
    # memory, where the heap limit counts them, instead of spilling into unbounded temp files.
    conn.execute(f"PRAGMA hard_heap_limit = {HEAP_LIMIT_MB * 1024 * 1024}")
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


def run(
    conn: sqlite3.Connection, sql: str, *, timeout_s: float, max_rows: int, max_cell: int
) -> dict[str, Any]:
    """Run one statement; the result as JSON-ready data: rows with their cells already rendered."""
    denied: list[list[str]] = []
    deadline = time.monotonic() + timeout_s
    conn.set_authorizer(authorizer(denied))
    # Returning true aborts the statement with "interrupted"; checked every 1000 VM steps. The
    # parent's kill covers the steps that never come back to this check.
    conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
    try:
        cursor = conn.execute(sql)
        rows = cursor.fetchmany(max_rows)
    except (sqlite3.Error, sqlite3.Warning, MemoryError) as exc:
        message = "out of memory" if isinstance(exc, MemoryError) else str(exc)
        return {"error": message, "denied": denied, "timed_out": "interrupted" in message}
    if cursor.description is None:
        return {"columns": None}
    more, counted = 0, True
    try:
        while batch := cursor.fetchmany(1000):
            more += len(batch)
    except (sqlite3.Error, MemoryError):
        # out of time or memory while counting: the rows shown are still right
        counted = False
    return {
        "columns": [cell(d[0], max_cell) for d in cursor.description],
        "rows": [[cell(v, max_cell) for v in row] for row in rows],
        "more": more,
        "counted": counted,
    }


def cell(value: Any, max_cell: int) -> str:
    """One value as Markdown table text: on one line, pipes escaped, at most `max_cell` characters."""
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.15g}"  # hides float noise such as 1905477.1400000022
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    else:
        text = str(value)
    text = " ".join(text.split()).replace("|", "\\|")  # newlines and pipes would break the table
    return text if len(text) <= max_cell else text[: max_cell - 1] + "…"


def _confine(parent: int, timeout_s: float) -> None:
    """Limits on this process itself; the SQL it runs is the untrusted part, not this code."""
    try:
        import ctypes

        # Die with the thread that started us, even if parley itself is killed.
        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):  # not Linux: the parent's kill and RLIMIT_CPU still hold
        pass
    if os.getppid() != parent:  # the parent ended before the line above took effect
        os._exit(1)
    # Ctrl-C in parley's terminal reaches this process too: parley decides when it ends, and says why.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import resource
    except ImportError:
        return
    cpu = int(timeout_s) + 3  # an orphan that somehow survived still ends on its own
    wanted = [
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_AS, ADDRESS_SPACE_MB << 20, ADDRESS_SPACE_MB << 20),
        (resource.RLIMIT_FSIZE, 0, 0),  # read-only: nothing to write, not even a temp file
        (resource.RLIMIT_CORE, 0, 0),
    ]
    for which, soft, hard in wanted:
        old_soft, old_hard = resource.getrlimit(which)
        if old_hard != resource.RLIM_INFINITY:  # never ask for more than we already have
            hard = min(hard, old_hard)
        soft = min(soft, hard) if old_soft == resource.RLIM_INFINITY else min(soft, hard, old_soft)
        try:  # noqa: SIM105 (contextlib costs this short-lived process an import)
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            pass


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def main(argv: Sequence[str] | None = None) -> int:
    """Read {"db", "sql", "timeout_s", "max_rows", "max_cell", "parent"} from stdin; answer on stdout."""
    request = json.loads(sys.stdin.buffer.read())
    timeout_s = float(request["timeout_s"])
    _confine(int(request["parent"]), timeout_s)
    try:
        conn = open_confined(request["db"])
    except sqlite3.Error as exc:
        _write(
            STARTED + json.dumps({"error": f"cannot open the database: {exc}", "denied": []}).encode() + b"\n"
        )
        return 0
    _write(STARTED)
    result = run(
        conn,
        request["sql"],
        timeout_s=timeout_s,
        max_rows=int(request["max_rows"]),
        max_cell=int(request["max_cell"]),
    )
    _write(json.dumps(result).encode() + b"\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
