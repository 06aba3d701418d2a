"""Operations on the sample business database: look up an order, issue a refund (approval required)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from typing import Annotated

from parley.tools import load_helper, tool

_data = load_helper(__file__, "data")


@tool(family="operations")
def lookup_order(order_id: Annotated[int, "The order number, e.g. 1042"]) -> str:
    """Look up one order: customer, date, status, total, items, open tickets and refunds."""
    with closing(sqlite3.connect(_data.database_path().resolve().as_uri() + "?mode=ro", uri=True)) as conn:
        order = conn.execute(
            "SELECT o.id, o.order_date, o.status, o.total, c.name, c.email FROM orders o "
            "JOIN customers c ON c.id = o.customer_id WHERE o.id = ?",
            (order_id,),
        ).fetchone()
        if order is None:
            return f"No order {order_id}. Order numbers are whole numbers such as 1042."
        items = conn.execute(
            "SELECT p.name, i.quantity, i.unit_price FROM order_items i JOIN products p ON p.id = i.product_id "
            "WHERE i.order_id = ?",
            (order_id,),
        ).fetchall()
        tickets = conn.execute(
            "SELECT id, category, priority, status, subject FROM support_tickets WHERE order_id = ?",
            (order_id,),
        ).fetchall()
        refunds = conn.execute(
            "SELECT id, amount, status, reason FROM refunds WHERE order_id = ?", (order_id,)
        ).fetchall()
    lines = [
        f"Order {order[0]} on {order[1]}: status {order[2]}, total {order[3]:.2f}; customer {order[4]} <{order[5]}>"
    ]
    lines += [f"- {q} x {name} at {price:.2f}" for name, q, price in items]
    lines += [f"Ticket {t[0]} ({t[1]}, {t[2]}, {t[3]}): {t[4]}" for t in tickets] or ["No tickets."]
    lines += [f"Refund {r[0]}: {r[1]:.2f} {r[2]} ({r[3]})" for r in refunds] or ["No refunds."]
    return "\n".join(lines)


@tool(family="operations", approval=True)
def issue_refund(
    order_id: Annotated[int, "The order to refund"],
    amount: Annotated[float, "Amount to refund, at most the order total"],
    reason: Annotated[str, "Why, in a few words"],
) -> str:
    """Refund an order (needs a human's approval). Writes the refund to the sample database."""
    path = _data.database_path()
    with closing(sqlite3.connect(path)) as conn, conn:
        row = conn.execute("SELECT total FROM orders WHERE id = ?", (order_id,)).fetchone()
        if row is None:
            return f"No order {order_id}: nothing refunded."
        refunded = conn.execute(
            "SELECT COALESCE(SUM(amount), 0) FROM refunds WHERE order_id = ?", (order_id,)
        ).fetchone()[0]
        if amount <= 0 or amount + refunded > row[0] + 1e-9:
            return f"Refused: {amount:.2f} is not between 0 and the {row[0] - refunded:.2f} still refundable on order {order_id}."
        cur = conn.execute(
            "INSERT INTO refunds (order_id, amount, reason, status, created_at) VALUES (?, ?, ?, 'issued', ?)",
            (order_id, amount, reason, datetime.now(UTC).strftime("%Y-%m-%d")),
        )
    return f"Refund {cur.lastrowid} issued: {amount:.2f} on order {order_id} ({reason})."
