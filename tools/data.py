"""Read-only SQL over the bundled sample business database, generated on first use.

Run as a script to write the database somewhere: `python tools/data.py --out sample.db`.
"""

from __future__ import annotations

import argparse
import os
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any

from parley.paths import data_dir
from parley.tools import load_helper, tool

DB_NAME = "sample.db"
MAX_ROWS = 50
MAX_CELL = 80
QUERY_TIMEOUT_S = 2.0
HINT = "Call describe_tables to see the tables, columns and example values."
READ_ONLY = (
    "sql_query is read-only: it runs one SELECT (WITH … SELECT and PRAGMA table_info are fine) "
    "and never changes the database."
)


_gen = load_helper(__file__, "_sampledb")
_build_lock = threading.Lock()

# Introspection pragmas whose argument is a table or index name: they only read the schema.
_READ_PRAGMAS = {"table_info", "table_xinfo", "table_list", "index_list", "index_info", "foreign_key_list"}
_READ_ACTIONS = {
    sqlite3.SQLITE_SELECT,
    sqlite3.SQLITE_READ,
    sqlite3.SQLITE_FUNCTION,
    sqlite3.SQLITE_RECURSIVE,
}
_WRITE_ACTIONS = ("INSERT", "UPDATE", "DELETE", "ATTACH", "DETACH", "ALTER_TABLE", "REINDEX", "ANALYZE",
                  "TRANSACTION", "SAVEPOINT", "PRAGMA", "CREATE_INDEX", "CREATE_TABLE",
                  "CREATE_TEMP_INDEX", "CREATE_TEMP_TABLE", "CREATE_TEMP_TRIGGER",
                  "CREATE_TEMP_VIEW", "CREATE_TRIGGER", "CREATE_VIEW", "CREATE_VTABLE",
                  "DROP_INDEX", "DROP_TABLE", "DROP_TEMP_INDEX", "DROP_TEMP_TABLE",
                  "DROP_TEMP_TRIGGER", "DROP_TEMP_VIEW", "DROP_TRIGGER", "DROP_VIEW",
                  "DROP_VTABLE")  # fmt: skip
_ACTION_NAMES = {getattr(sqlite3, f"SQLITE_{n}"): n.replace("_", " ") for n in _WRITE_ACTIONS}
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
    """The sample database in the data directory, (re)generated if missing or from another schema version."""
    path = data_dir() / DB_NAME
    if _stamp(path) != _gen.SCHEMA_VERSION:
        with _build_lock:
            if _stamp(path) != _gen.SCHEMA_VERSION:
                write_database(path)
    return path


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


def _authorizer(denied: list[str]) -> Callable[[int, str | None, str | None, str | None, str | None], int]:
    def authorize(action: int, arg1: str | None, _arg2: str | None, _db: str | None, _src: str | None) -> int:
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_PRAGMA and arg1 in _READ_PRAGMAS:
            return sqlite3.SQLITE_OK
        if action == sqlite3.SQLITE_UPDATE and arg1 == "sqlite_master":
            # SQLite reports this when a table-valued pragma (pragma_table_info('t')) loads the schema.
            # A real write to sqlite_master is impossible anyway: the file is opened read-only and
            # writable_schema is not an allowed pragma.
            return sqlite3.SQLITE_OK
        label = _ACTION_NAMES.get(action, f"operation {action}")
        denied.append(f"PRAGMA {arg1}" if action == sqlite3.SQLITE_PRAGMA else label)
        return sqlite3.SQLITE_DENY

    return authorize


def _refusal(what: str) -> str:
    return f"Refused: {what} is not allowed. {READ_ONLY}"


@tool(family="data")
def sql_query(
    query: Annotated[str, "One read-only SQLite SELECT statement (WITH … SELECT is fine)"],
) -> str:
    """Run one read-only SQL SELECT (SQLite dialect) on the company's sample business database.

    Returns the rows as a Markdown table, at most 50 rows: aggregate or add LIMIT for big results.
    The database has customers, products, orders, order_items, sales (per region and quarter like
    '2025-Q3'), support_tickets and refunds. Call describe_tables first to see the columns.
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
    denied: list[str] = []
    with closing(_open_ro(database_path())) as conn:
        deadline = time.monotonic() + QUERY_TIMEOUT_S
        conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 1_000_000)  # no gigabyte strings from randomblob & co
        conn.set_authorizer(_authorizer(denied))
        # Returning true aborts the statement with "interrupted"; checked every 1000 VM steps.
        conn.set_progress_handler(lambda: time.monotonic() > deadline, 1000)
        try:
            cursor = conn.execute(sql)
            rows = cursor.fetchmany(MAX_ROWS)
        except (sqlite3.Error, sqlite3.Warning) as exc:
            return _explain(exc, denied, timed_out="interrupted" in str(exc))
        if cursor.description is None:
            return "The statement ran but returned no result set."
        columns = [d[0] for d in cursor.description]
        more, counted = 0, True
        try:
            while batch := cursor.fetchmany(1000):
                more += len(batch)
        except sqlite3.OperationalError:  # out of time while counting: the rows shown are still right
            counted = False
    if not rows:
        return f"The query returned no rows (columns: {', '.join(columns)})."
    table = _markdown(columns, rows)
    if more or not counted:
        return f"{table}\n… {more if counted else 'many'} more rows not shown (add LIMIT or aggregate)"
    return table


def _explain(exc: Exception, denied: list[str], *, timed_out: bool) -> str:
    if denied:
        return _refusal(denied[0])
    if timed_out:
        return (
            f"Query stopped: it ran longer than the {QUERY_TIMEOUT_S:g} s limit. Avoid cross joins "
            "(join on keys), filter with WHERE, or aggregate."
        )
    if "one statement at a time" in str(exc):  # Python's sqlite3 refuses "SELECT 1; DROP …" itself
        return f"Refused: only one SQL statement per call. {READ_ONLY}"
    message = str(exc).rstrip(".")
    if "readonly" in message or "may not be modified" in message:
        return _refusal("changing the database")
    return f"SQL error: {message}. {HINT}"


def _markdown(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        text = f"{value:.15g}"  # hides float noise such as 1905477.1400000022
    elif isinstance(value, bytes):
        text = f"<{len(value)} bytes>"
    else:
        text = str(value)
    text = " ".join(text.split()).replace("|", "\\|")  # newlines and pipes would break the table
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


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
        ]
        if kind == "TEXT":
            col = '"' + column.replace('"', '""') + '"'
            values = [r[0] for r in conn.execute(f"SELECT DISTINCT {col} FROM {quoted} ORDER BY 1 LIMIT 9")]
            if len(values) <= 8:
                extra.append(": " + ", ".join(repr(v) for v in values))
            elif column.endswith(("_at", "_date")):
                low, high = conn.execute(f"SELECT MIN({col}), MAX({col}) FROM {quoted}").fetchone()
                extra.append(f": {low} … {high}")
        lines.append(f"- {column} {kind}{''.join(extra)}")
    return "\n".join(line for line in lines if line)


def main(argv: list[str] | None = None) -> int:
    """Write the sample database to --out (default: the parley data directory)."""
    parser = argparse.ArgumentParser(description="Generate parley's sample business database.")
    parser.add_argument("--out", type=Path, help=f"where to write it (default: <data dir>/{DB_NAME})")
    args = parser.parse_args(argv)
    print(write_database(args.out or data_dir() / DB_NAME))
    return 0


if __name__ == "__main__":
    sys.exit(main())
