"""The shipped tools (tools/data.py, tools/calc.py), loaded through the registry as users get them."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from parley.engine.autogen.tools import as_function_tool
from parley.tools import ToolRegistry

TOOLS_DIR = Path(__file__).resolve().parent.parent / "tools"
REGIONS = {"North America", "EMEA", "APAC", "LATAM"}
TABLES = ["customers", "products", "orders", "order_items", "sales", "support_tickets", "refunds"]


@pytest.fixture(scope="module")
def registry() -> ToolRegistry:
    reg = ToolRegistry.discover([TOOLS_DIR])
    assert not [e for e in reg.errors if str(TOOLS_DIR) in e], reg.errors
    return reg


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def sql(registry: ToolRegistry, data_dir: Path) -> Callable[[str], str]:
    return registry.get("sql_query").func


@pytest.fixture
def calc(registry: ToolRegistry) -> Callable[[str], str]:
    return registry.get("calculate").func


def rows_of(table: str) -> list[list[str]]:
    """The body cells of a Markdown table returned by sql_query."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def scalar(sql: Callable[[str], str], query: str) -> str:
    return rows_of(sql(query))[0][0]


def test_registry_exposes_the_tools_with_families(registry: ToolRegistry) -> None:
    assert {"sql_query", "describe_tables", "calculate"} <= set(registry.names())
    assert registry.get("sql_query").family == "data"
    assert registry.get("describe_tables").family == "data"
    assert registry.get("calculate").family == "analysis"


def test_autogen_schema_describes_parameters(registry: ToolRegistry) -> None:
    schema = as_function_tool(registry.get("sql_query")).schema
    query = schema["parameters"]["properties"]["query"]
    assert query["type"] == "string" and "SELECT" in query["description"]
    assert schema["parameters"]["required"] == ["query"]
    assert "describe_tables" in schema["description"]
    expression = as_function_tool(registry.get("calculate")).schema["parameters"]["properties"]["expression"]
    assert expression["description"]
    assert as_function_tool(registry.get("describe_tables")).schema["parameters"]["properties"] == {}


def test_q3_sales_by_region(sql: Callable[[str], str]) -> None:
    out = sql(
        "SELECT region, SUM(revenue) AS revenue FROM sales WHERE quarter = '2025-Q3' GROUP BY region ORDER BY region"
    )
    rows = rows_of(out)
    assert {r[0] for r in rows} == REGIONS
    assert all(float(r[1]) > 1000 for r in rows)


def test_q3_tells_a_story_emea_up_apac_down(sql: Callable[[str], str]) -> None:
    out = sql(
        "SELECT region, SUM(CASE WHEN quarter = '2025-Q3' THEN revenue END) / "
        "SUM(CASE WHEN quarter = '2025-Q2' THEN revenue END) FROM sales GROUP BY region"
    )
    growth = {region: float(ratio) for region, ratio in rows_of(out)}
    assert growth["EMEA"] > 1.25
    assert growth["APAC"] < 0.8
    assert 0.85 < growth["North America"] < 1.15


def test_sales_agree_with_orders(sql: Callable[[str], str]) -> None:
    from_sales = scalar(sql, "SELECT ROUND(SUM(revenue), 2) FROM sales")
    from_orders = scalar(sql, "SELECT ROUND(SUM(total), 2) FROM orders WHERE status != 'cancelled'")
    assert float(from_sales) == pytest.approx(float(from_orders))


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM orders",
        "drop table orders",
        "INSERT INTO orders VALUES (99999, 1, '2025-01-01', 'delivered', 1.0)",
        "UPDATE orders SET total = 0",
        "ATTACH DATABASE ':memory:' AS other",
        "CREATE TEMP TABLE scratch(x)",
        "PRAGMA user_version = 99",
        "WITH doomed AS (SELECT id FROM orders) DELETE FROM orders WHERE id IN doomed",
        "-- sneaky\nDELETE FROM refunds",
        "SELECT 1; DROP TABLE orders",
    ],
)
def test_writes_are_refused_and_data_survives(sql: Callable[[str], str], statement: str) -> None:
    before = scalar(sql, "SELECT COUNT(*) || '/' || ROUND(SUM(total), 2) FROM orders")
    out = sql(statement)
    assert out.startswith("Refused:"), out
    assert "read-only" in out
    assert scalar(sql, "SELECT COUNT(*) || '/' || ROUND(SUM(total), 2) FROM orders") == before
    assert scalar(sql, "SELECT COUNT(*) FROM refunds") != "0"


def test_vacuum_into_cannot_write_a_copy(sql: Callable[[str], str], tmp_path: Path) -> None:
    target = tmp_path / "copy.db"
    assert sql(f"VACUUM INTO '{target}'").startswith("Refused:")
    assert not target.exists()


def test_read_only_introspection_is_allowed(sql: Callable[[str], str]) -> None:
    assert "customer_id" in sql("PRAGMA table_info(orders)")
    assert "order_date" in sql("SELECT name FROM pragma_table_info('orders')")
    out = sql("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3) SELECT i FROM n")
    assert [r[0] for r in rows_of(out)] == ["1", "2", "3"]


def test_big_select_is_capped_with_a_visible_note(sql: Callable[[str], str]) -> None:
    total = int(scalar(sql, "SELECT COUNT(*) FROM order_items"))
    out = sql("SELECT * FROM order_items")
    assert len(rows_of(out)) == 50
    assert out.splitlines()[-1] == f"… {total - 50} more rows not shown (add LIMIT or aggregate)"
    assert "more rows" not in sql("SELECT * FROM order_items LIMIT 50")


def test_cells_are_escaped_and_truncated(sql: Callable[[str], str]) -> None:
    out = sql(
        "SELECT 'a|b' AS pipe, 'two' || char(10) || 'lines' AS nl, NULL AS empty, '" + "0" * 300 + "' AS long"
    )  # a literal long text: zeroblob, which made it before, is refused now (it makes blobs of any size)
    pipe, nl, empty, long = rows_of(out.replace("\\|", "¦"))[0]
    assert (pipe, nl, empty) == ("a¦b", "two lines", "NULL")
    assert long.endswith("…") and len(long) < 100


def test_sql_errors_are_helpful(sql: Callable[[str], str]) -> None:
    out = sql("SELECT revenue FROM orderz")
    assert out.startswith("SQL error:") and "no such table: orderz" in out and "describe_tables" in out
    out = sql("SELECT amount FROM orders")
    assert "no such column: amount" in out and "describe_tables" in out
    assert sql("SELEC 1").startswith("SQL error:")
    assert sql("   ").startswith("SQL error:")


def test_runaway_query_is_stopped(sql: Callable[[str], str]) -> None:
    start = time.monotonic()
    out = sql("SELECT COUNT(*) FROM order_items a, order_items b, order_items c")
    assert out.startswith("Query stopped:") and "2 s" in out
    assert time.monotonic() - start < 10


def test_describe_tables_lists_tables_columns_and_counts(registry: ToolRegistry, data_dir: Path) -> None:
    out = registry.get("describe_tables").func()
    for table in TABLES:
        assert f"## {table} (" in out
    assert "- customer_id INTEGER → customers.id" in out
    assert "'2025-Q3'" in out and "'North America'" in out
    orders = int(out.split("## orders (")[1].split()[0])
    assert 300 <= orders <= 5000


def test_demo_order_1042_is_delivered_with_a_broken_product_ticket(sql: Callable[[str], str]) -> None:
    (order,) = rows_of(sql("SELECT id, status, total FROM orders WHERE id = 1042"))
    assert order[:2] == ["1042", "delivered"]
    items = sql(
        "SELECT p.name, i.quantity FROM order_items i JOIN products p ON p.id = i.product_id WHERE order_id = 1042"
    )
    assert "Monitor" in items
    ticket = sql("SELECT category, status, subject FROM support_tickets WHERE order_id = 1042")
    assert "broken" in ticket and "Monitor" in ticket


def test_generation_is_deterministic(
    registry: ToolRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sql = registry.get("sql_query").func
    queries = [
        "SELECT * FROM customers ORDER BY id",
        "SELECT * FROM orders ORDER BY id",
        "SELECT region, quarter, SUM(revenue), SUM(units) FROM sales GROUP BY 1, 2",
        "SELECT * FROM support_tickets ORDER BY id DESC LIMIT 40",
        "SELECT * FROM refunds ORDER BY id",
    ]
    results = []
    for name in ("one", "two"):
        monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path / name))
        results.append([sql(q) for q in queries])
    assert results[0] == results[1]
    dumps = [_dump(tmp_path / name / "sample.db") for name in ("one", "two")]
    assert dumps[0] == dumps[1]


def test_script_writes_the_same_database(tmp_path: Path, data_dir: Path, sql: Callable[[str], str]) -> None:
    out = tmp_path / "exported.db"
    done = subprocess.run(
        [sys.executable, str(TOOLS_DIR / "data.py"), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    sql("SELECT 1")  # generates the data directory's copy
    assert _dump(out) == _dump(data_dir / "sample.db")
    assert not list(tmp_path.glob("*.tmp")) and not list(data_dir.glob("*.tmp"))


def test_stale_or_broken_database_is_regenerated(sql: Callable[[str], str], data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(data_dir / "sample.db") as conn:  # an old layout with another version stamp
        conn.execute("CREATE TABLE orders (id INTEGER)")
        conn.execute("PRAGMA user_version = 0")
    conn.close()
    assert scalar(sql, "SELECT status FROM orders WHERE id = 1042") == "delivered"
    (data_dir / "sample.db").write_bytes(b"not a database")
    assert scalar(sql, "SELECT COUNT(*) FROM customers") != "0"


def test_concurrent_first_use_is_safe(sql: Callable[[str], str], data_dir: Path) -> None:
    with ThreadPoolExecutor(max_workers=6) as pool:
        counts = list(pool.map(lambda _: scalar(sql, "SELECT COUNT(*) FROM orders"), range(12)))
    assert len(set(counts)) == 1 and counts[0] != "0"
    assert [p.name for p in data_dir.iterdir()] == ["sample.db"]


def _dump(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        text = "\n".join(conn.iterdump())
    conn.close()
    return text


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(120 - 100) / 100 * 100", "20.0"),
        ("0.1 + 0.2", "0.3"),
        ("-2 ** 2", "-4"),
        ("7 // 2 + 7 % 2", "4"),
        ("round(sqrt(2), 3)", "1.414"),
        ("log(1000, 10)", "3.0"),
        ("max(3, abs(-5), min(9, 8))", "8"),
        ("sum([1.5, 2.5, 3])", "7.0"),
        ("2 ** 10", "1024"),
    ],
)
def test_calculate_arithmetic(calc: Callable[[str], str], expression: str, expected: str) -> None:
    assert calc(expression) == expected


@pytest.mark.parametrize(
    ("expression", "complaint"),
    [
        ("__import__('os')", "not allowed"),
        ("__import__('os').system('echo hacked')", "attribute access"),
        ("(1).__class__", "attribute access"),
        ("().__class__.__bases__", "attribute access"),
        ("open('/etc/passwd')", "not allowed"),
        ("x + 1", "variables are not allowed"),
        ("'a' * 3", "not a number"),
        ("[1] * 10", "list"),
        ("9 ** 9 ** 9", "exponent"),
        ("(10 ** 500) ** 3", "too large"),
        ("2 ^ 3", "**"),
        ("1 / 0", "division by zero"),
        ("sqrt(-1)", "domain"),
        ("1 +", "not a valid"),
        ("lambda: 1", "not allowed"),
    ],
)
def test_calculate_refuses_what_is_not_arithmetic(
    calc: Callable[[str], str], expression: str, complaint: str
) -> None:
    out = calc(expression)
    assert out.startswith("Error:") and complaint in out, out
