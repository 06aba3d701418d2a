"""Read-only SQL over the bundled sample business database, generated on first use.

Run as a script to write the database somewhere: `python tools/data.py --out sample.db`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import selectors
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

from parley.errors import ConfigError
from parley.paths import data_dir
from parley.tools import Cancellation, current_context, load_helper, tool

DB_NAME = "sample.db"
MAX_ROWS = 50
MAX_CELL = 80
QUERY_TIMEOUT_S = 2.0
"""Wall-clock seconds one query may run; past it the worker process running it is killed."""
KILL_GRACE_S = 0.5
"""How long past QUERY_TIMEOUT_S the worker has to report its own, gentler stop before it is killed."""
START_LIMIT_S = 30.0
"""How long the worker may take to start (a busy machine); the query's own clock starts after."""
MAX_QUERY_CHARS = 100_000
MAX_WORKER_OUTPUT = 1 << 20
HINT = "Call describe_tables to see the tables, columns and example values."
READ_ONLY = (
    "sql_query is read-only: it runs one SELECT (WITH … SELECT and PRAGMA table_info are fine) "
    "and never changes the database."
)


_gen = load_helper(__file__, "_sampledb")
_worker = load_helper(__file__, "_sqlworker")
WORKER = Path(_worker.__file__ or "").resolve()
_build_lock = threading.Lock()

_WRITE_KEYWORDS = {"INSERT", "REPLACE", "UPDATE", "DELETE", "DROP", "CREATE", "ALTER", "ATTACH",
                   "DETACH", "VACUUM", "REINDEX", "ANALYZE", "BEGIN", "COMMIT", "END", "ROLLBACK",
                   "SAVEPOINT", "RELEASE"}  # fmt: skip
_LEADING_COMMENTS = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*", re.S)


def write_database(dest: Path) -> Path:
    """Generate the sample database into a temporary file, then rename it over `dest` atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    try:
        _gen.build(Path(tmp))
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def database_path() -> Path:
    """The sample database, (re)generated if missing or from another schema version: in the running conversation's
    own data folder if it has one (an evaluation's scenario run: each starts from fresh data), else in parley's data
    directory, shared by every conversation."""
    path = (_run_data_dir() or data_dir()) / DB_NAME
    if _stamp(path) != _gen.SCHEMA_VERSION:
        with _build_lock:
            if _stamp(path) != _gen.SCHEMA_VERSION:
                write_database(path)
    return path


def _run_data_dir() -> Path | None:
    try:
        return current_context().data_dir
    except ConfigError:  # no conversation runs this call (a script, the command below)
        return None


def _stamp(path: Path) -> int | None:
    if not path.is_file():
        return None
    try:
        with closing(_open_ro(path)) as conn:
            return int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.DatabaseError:  # truncated or not a database: regenerate it
        return None


def _open_ro(path: Path) -> sqlite3.Connection:
    # as_uri() percent-encodes the path, so spaces, '?' or '#' in the data directory cannot break the URI.
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)


def _refusal(what: str) -> str:
    return f"Refused: {what} is not allowed. {READ_ONLY}"


@tool(family="data")
def sql_query(
    query: Annotated[str, "One read-only SQLite SELECT statement (WITH … SELECT is fine)"],
    cancellation_token: Cancellation | None = None,
) -> str:
    """Run one read-only SQL SELECT (SQLite dialect) on the company's sample business database.

    Returns the rows as a Markdown table, at most 50 rows: aggregate or add LIMIT for big results.
    The database has customers, products, orders, order_items, sales (per region and quarter like
    '2025-Q3'), support_tickets and refunds. Call describe_tables first to see the columns.
    A query may run 2 s; printf, format, zeroblob and randomblob are not available (use ROUND(x, 2)).
    """
    sql = query.strip()
    body = _LEADING_COMMENTS.sub("", sql)
    if not body:
        return f"SQL error: the query is empty. {HINT}"
    word = re.match(r"[A-Za-z]+", body)
    if word and word[0].upper() in _WRITE_KEYWORDS:
        # The authorizer refuses these too; checking first gives a clearer message and also covers
        # VACUUM, which the authorizer never sees.
        return _refusal(word[0].upper())
    if len(sql) > MAX_QUERY_CHARS:
        return (
            f"SQL error: the query is {len(sql)} characters long; at most {MAX_QUERY_CHARS} are allowed. "
            "Write it shorter (aggregate instead of listing values)."
        )
    result = _run_in_worker(database_path(), sql, cancellation_token)
    if isinstance(result, str):
        return result
    if "error" in result:
        return _explain(result, sql)
    if result["columns"] is None:
        return "The statement ran but returned no result set."
    columns, rows = result["columns"], result["rows"]
    if not rows:
        return f"The query returned no rows (columns: {', '.join(columns)})."
    table = _markdown(columns, rows)
    more, counted = result["more"], result["counted"]
    if more or not counted:
        return f"{table}\n… {more if counted else 'many'} more rows not shown (add LIMIT or aggregate)"
    return table


class _Waker:
    """Wakes the waiting thread when the call is cancelled. The token keeps this callback for
    good, so a late cancel must not write into a descriptor number that was closed and reused."""

    def __init__(self) -> None:
        self.read, self._write = os.pipe()
        self._lock = threading.Lock()

    def __call__(self) -> None:
        with self._lock:
            if self._write >= 0:
                os.write(self._write, b"x")

    def close(self) -> None:
        with self._lock:
            os.close(self._write)
            self._write = -1
        os.close(self.read)


def _run_in_worker(db: Path, sql: str, token: Cancellation | None) -> dict[str, Any] | str:
    """Run `sql` in a worker process of its own and kill it past the time limit or on cancellation.

    Returns the worker's JSON result, or the message for the agent when there is none."""
    request = json.dumps(
        {
            "db": db.resolve().as_uri(),
            "sql": sql,
            "timeout_s": QUERY_TIMEOUT_S,
            "max_rows": MAX_ROWS,
            "max_cell": MAX_CELL,
            "parent": os.getpid(),
        }
    ).encode()
    try:
        waker = _Waker()
    except OSError as exc:
        return f"Error: could not start the SQL worker process ({exc}). Try again in a moment."
    try:
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-B", str(WORKER)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd="/",
            env={},
            close_fds=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        waker.close()
        return (
            f"Error: could not start the SQL worker process ({exc}). The machine may be out of "
            "processes or memory; try again in a moment."
        )
    if token is not None:
        token.add_callback(waker)
    try:
        ended, out, err = _exchange(proc, request, waker.read)
    finally:
        if proc.poll() is None:
            proc.kill()  # only this thread kills and reaps it: no chance of signalling a reused pid
        proc.wait()
        waker.close()
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    return _outcome(ended, proc.returncode, out, err, sql)


class _Exchange:
    """One request to a worker and its answer: what is left to send, what came back, and the clock."""

    def __init__(self, proc: subprocess.Popen[bytes], request: bytes) -> None:
        self.proc = proc
        self.pending = request
        self.out = self.err = b""
        self.started = False
        self.deadline = time.monotonic() + START_LIMIT_S
        self.open_outputs = 2

    def send(self, sel: selectors.BaseSelector, fd: int) -> None:
        try:
            self.pending = self.pending[os.write(fd, self.pending[:65536]) :]
        except BlockingIOError:
            return
        except BrokenPipeError:  # the worker died before reading: its exit status says why
            self.pending = b""
        if not self.pending:
            sel.unregister(fd)
            assert self.proc.stdin is not None
            self.proc.stdin.close()

    def receive(self, sel: selectors.BaseSelector, fd: int, stream: str) -> str | None:
        """Read what the worker wrote on one of its outputs; "too much" when its answer is past the limit."""
        chunk = os.read(fd, 65536)
        if not chunk:
            sel.unregister(fd)
            self.open_outputs -= 1
        elif stream == "err":
            self.err = (self.err + chunk)[-MAX_WORKER_OUTPUT:]
        else:
            self.out += chunk
            if len(self.out) > MAX_WORKER_OUTPUT:
                return "too much"
            if not self.started and self.out.startswith(_worker.STARTED):
                self.started = True  # the query's own clock starts now
                self.deadline = time.monotonic() + QUERY_TIMEOUT_S + KILL_GRACE_S
        return None

    def run(self, sel: selectors.BaseSelector) -> str:
        """Until both outputs close: how it ended ("timeout", "start", "cancelled", "too much"), or "" then."""
        while self.open_outputs:
            left = self.deadline - time.monotonic()
            if left <= 0:
                return "timeout" if self.started else "start"
            for key, _ in sel.select(left):
                if key.data == "wake":
                    return "cancelled"
                ended = self.send(sel, key.fd) if key.data == "in" else self.receive(sel, key.fd, key.data)
                if ended:
                    return ended
        return ""


def _exchange(proc: subprocess.Popen[bytes], request: bytes, wake: int) -> tuple[str, bytes, bytes]:
    """Send the request, collect stdout and stderr; how it ended: "done", "timeout", "start" (it
    never started) or "cancelled". The query's clock starts when the worker says it started."""
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    talk = _Exchange(proc, request)
    with selectors.DefaultSelector() as sel:
        os.set_blocking(proc.stdin.fileno(), False)
        sel.register(proc.stdin.fileno(), selectors.EVENT_WRITE, "in")
        sel.register(proc.stdout.fileno(), selectors.EVENT_READ, "out")
        sel.register(proc.stderr.fileno(), selectors.EVENT_READ, "err")
        sel.register(wake, selectors.EVENT_READ, "wake")
        ended = talk.run(sel)
    if ended:
        return ended, talk.out, talk.err
    try:  # both pipes closed: the worker is exiting
        proc.wait(max(talk.deadline - time.monotonic(), 0.1))
    except subprocess.TimeoutExpired:
        return "timeout", talk.out, talk.err
    return "done", talk.out, talk.err


def _outcome(ended: str, returncode: int | None, out: bytes, err: bytes, sql: str) -> dict[str, Any] | str:
    if ended == "cancelled":
        return "Query stopped: the run was stopped before the query finished."
    if ended == "timeout":
        return _stopped(sql, killed=True)
    if ended == "start":
        return (
            f"Error: the SQL worker process did not start within {START_LIMIT_S:g} s; the machine is "
            "overloaded. Try again in a moment."
        )
    if ended == "too much":
        return (
            f"Error: the result is larger than the {MAX_WORKER_OUTPUT >> 20} MB a result may be. Select fewer "
            "columns, add LIMIT, or aggregate."
        )
    body = out[len(_worker.STARTED) :] if out.startswith(_worker.STARTED) else b""
    try:
        result = json.loads(body)
    except ValueError:
        result = None
    if isinstance(result, dict):
        return result
    if returncode is not None and returncode < 0:
        how = f"was killed by {_signal_name(-returncode)}"
    else:
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {returncode}"]
        how = f"failed ({last[0][:200]})"
    return (
        f"Query stopped: the SQL worker process {how} before it answered, most likely because the query "
        f"needed too much time or memory. Simplify it: filter with WHERE, aggregate, or add LIMIT."
    )


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _stopped(sql: str, *, killed: bool) -> str:
    if killed:
        text = (
            f"Query stopped: it ran past the {QUERY_TIMEOUT_S:g} s limit and was killed. A single step "
            "took too long (such as instr, LIKE or replace over very long text): simplify it, filter "
            "with WHERE, or aggregate."
        )
    else:
        text = (
            f"Query stopped: it ran longer than the {QUERY_TIMEOUT_S:g} s limit. Avoid cross joins "
            "(join on keys), filter with WHERE, or aggregate."
        )
    return text + _recursion_hint(sql)


def _recursion_hint(sql: str) -> str:
    if not re.search(r"\bRECURSIVE\b", sql, re.I):
        return ""
    return (
        " A WITH RECURSIVE query must end itself: give its recursive part a stop condition such as "
        "WHERE n < 100, or put LIMIT inside the CTE."
    )


def _explain(result: dict[str, Any], sql: str) -> str:
    """The message for a query that failed in the worker: what is wrong and what to do instead."""
    denied, message = result.get("denied") or [], str(result["error"]).rstrip(".")
    if denied:
        kind, name = denied[0]
        if kind == "function":
            why = _worker.DENIED_FUNCTIONS.get(name, "it is not allowed here")
            return f"Refused: the SQL function {name}() is not allowed: {why}."
        return _refusal(name)
    if result.get("timed_out"):
        return _stopped(sql, killed=False)
    if "out of memory" in message:
        return (
            f"Query stopped: it needed more than the {_worker.HEAP_LIMIT_MB} MB of memory a query may "
            "use. Filter with WHERE, aggregate, or add LIMIT." + _recursion_hint(sql)
        )
    if "too big" in message:  # SQLITE_LIMIT_LENGTH: a string or blob past the limit
        return (
            f"Refused: the query builds a text or blob longer than the {_worker.MAX_VALUE_BYTES:,} bytes "
            "one value may hold. Build smaller values: shorter strings, or group_concat over fewer rows."
        )
    if "one statement at a time" in message:  # Python's sqlite3 refuses "SELECT 1; DROP …" itself
        return f"Refused: only one SQL statement per call. {READ_ONLY}"
    if "readonly" in message or "may not be modified" in message:
        return _refusal("changing the database")
    return f"SQL error: {message}. {HINT}"


def _markdown(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table of cells the worker already rendered (one line each, pipes escaped)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


@tool(family="data")
def describe_tables() -> str:
    """List every table in the sample business database with its row count, columns, types and
    example values. Call this before writing SQL for sql_query."""
    with closing(_open_ro(database_path())) as conn:
        names = [
            r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY rowid")
        ]
        return "\n\n".join(_describe(conn, name) for name in names if not name.startswith("sqlite_"))


def _describe(conn: sqlite3.Connection, table: str) -> str:
    quoted = '"' + table.replace('"', '""') + '"'
    count = conn.execute(f"SELECT COUNT(*) FROM {quoted}").fetchone()[0]
    links = {r[3]: f"{r[2]}.{r[4]}" for r in conn.execute(f"PRAGMA foreign_key_list({quoted})")}
    info = conn.execute(f"PRAGMA table_info({quoted})").fetchall()
    key = [r[1] for r in sorted(info, key=lambda r: r[5]) if r[5]]
    lines = [f"## {table} ({count} rows)", _gen.NOTES.get(table, "")]
    if len(key) > 1:
        lines.append(f"Primary key: ({', '.join(key)})")
    for _cid, column, kind, _notnull, _default, pk in info:
        extra = [
            " primary key" if pk and len(key) == 1 else "",
            f" → {links[column]}" if column in links else "",
            _examples(conn, quoted, column) if kind == "TEXT" else "",
        ]
        lines.append(f"- {column} {kind}{''.join(extra)}")
    return "\n".join(line for line in lines if line)


def _examples(conn: sqlite3.Connection, quoted: str, column: str) -> str:
    """A text column's values when there are at most 8 of them, or the range of a date column."""
    col = '"' + column.replace('"', '""') + '"'
    values = [r[0] for r in conn.execute(f"SELECT DISTINCT {col} FROM {quoted} ORDER BY 1 LIMIT 9")]
    if len(values) <= 8:
        return ": " + ", ".join(repr(v) for v in values)
    if column.endswith(("_at", "_date")):
        low, high = conn.execute(f"SELECT MIN({col}), MAX({col}) FROM {quoted}").fetchone()
        return f": {low} … {high}"
    return ""


def main(argv: list[str] | None = None) -> int:
    """Write the sample database to --out (default: the parley data directory)."""
    parser = argparse.ArgumentParser(description="Generate parley's sample business database.")
    parser.add_argument("--out", type=Path, help=f"where to write it (default: <data dir>/{DB_NAME})")
    args = parser.parse_args(argv)
    print(write_database(args.out or data_dir() / DB_NAME))
    return 0


if __name__ == "__main__":
    sys.exit(main())
