"""Deterministic generator for the sample business database (stdlib only, fixed seed).

Loaded by `tools/data.py`; the leading underscore keeps the registry from treating it as a tool module.
Sales are aggregated from the orders, so every number in the database agrees with every other.
"""

from __future__ import annotations

import random
import re
import sqlite3
from bisect import bisect_right
from datetime import date, timedelta
from pathlib import Path

SCHEMA_VERSION = 1
"""Stamped into `PRAGMA user_version`; bump it whenever the generated data changes."""
SEED = 20250920
AS_OF = date(2025, 12, 31)
"""The day the data set was "exported": nothing happens after it."""
DEMO_ORDER = 1042
"""A delivered order whose monitor arrived broken; demos refer to it by number."""

REGIONS = {"North America": 1.0, "EMEA": 0.8, "APAC": 0.6, "LATAM": 0.35}
QUARTERS = [(y, q) for y in (2024, 2025) for q in (1, 2, 3, 4)]
# The 2025-Q3 story: a new EMEA distributor lifts orders, an APAC monitor shortage cuts them.
STORY = {("EMEA", 2025, 3): 1.5, ("APAC", 2025, 3): 0.6, ("EMEA", 2025, 4): 1.4, ("APAC", 2025, 4): 0.85}
SEASON = {1: 0.9, 2: 0.95, 3: 1.0, 4: 1.2}
TOTAL_ORDERS = 1150

SCHEMA = """
CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL,
    region TEXT NOT NULL, segment TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
    unit_price REAL NOT NULL);
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
    order_date TEXT NOT NULL, status TEXT NOT NULL, total REAL NOT NULL);
CREATE TABLE order_items (order_id INTEGER NOT NULL REFERENCES orders(id),
    product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL,
    unit_price REAL NOT NULL, PRIMARY KEY (order_id, product_id));
CREATE TABLE sales (region TEXT NOT NULL, quarter TEXT NOT NULL,
    product_id INTEGER NOT NULL REFERENCES products(id), revenue REAL NOT NULL, units INTEGER NOT NULL,
    PRIMARY KEY (region, quarter, product_id));
CREATE TABLE support_tickets (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
    order_id INTEGER REFERENCES orders(id), opened_at TEXT NOT NULL, category TEXT NOT NULL,
    priority TEXT NOT NULL, status TEXT NOT NULL, subject TEXT NOT NULL);
CREATE TABLE refunds (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL REFERENCES orders(id),
    amount REAL NOT NULL, reason TEXT NOT NULL, status TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX orders_customer ON orders(customer_id);
CREATE INDEX tickets_order ON support_tickets(order_id);
CREATE INDEX refunds_order ON refunds(order_id);
"""

NOTES = {
    "customers": "Business customers. created_at is YYYY-MM-DD.",
    "products": "The catalogue; unit_price is the list price in USD.",
    "orders": "One row per order, 2024-01-01..2025-12-31 (order_date YYYY-MM-DD); total = sum of its items.",
    "order_items": "Order lines; unit_price is what the customer paid per unit after their segment discount.",
    "sales": "Revenue (USD) and units per customer region, quarter ('2025-Q3') and product, "
    "aggregated from all orders except cancelled ones.",
    "support_tickets": "Support tickets; opened_at is 'YYYY-MM-DD HH:MM'; order_id is NULL for account issues.",
    "refunds": "Refunds against orders; created_at is YYYY-MM-DD.",
}

PRODUCTS = {
    "Laptops": [("Aurora 14 Laptop", 1199), ("Aurora 16 Pro Laptop", 1899), ("Nimbus 13 Ultrabook", 999),
                ("Atlas 15 Workstation", 2499), ("Nimbus 11 Chromebook", 349)],
    "Monitors": [("Vista 24 Monitor", 229), ("Vista 27 4K Monitor", 449), ("Vista 34 Ultrawide Monitor", 699),
                 ("Vista 32 Pro Display", 1299), ("Vista 22 Monitor", 159)],
    "Peripherals": [("Glide Wireless Mouse", 39), ("Glide Ergonomic Mouse", 69), ("Strata Mechanical Keyboard", 129),
                    ("Strata Slim Keyboard", 59), ("Dock Pro USB-C Hub", 189), ("Dock Mini USB-C Adapter", 49),
                    ("Orbit HD Webcam", 89), ("Orbit 4K Webcam", 159)],
    "Audio": [("Echo ANC Headset", 249), ("Echo Buds", 129), ("Echo Conference Speaker", 299),
              ("Echo USB Headset", 79)],
    "Networking": [("Relay Wi-Fi 6 Router", 279), ("Relay Mesh Node", 149), ("Relay 24-Port Switch", 399),
                   ("Relay Access Point", 219)],
    "Software": [("Shield Endpoint Security (1 yr)", 59), ("Vault Cloud Backup (1 yr)", 99),
                 ("Office Suite License (1 yr)", 129), ("Fleet Device Management (1 yr)", 48)],
}  # fmt: skip
CATEGORY_WEIGHT = {"Laptops": 2, "Monitors": 3, "Peripherals": 5, "Audio": 3, "Networking": 2, "Software": 3}
SEGMENTS = {"Enterprise": (15, 0.12, (2, 6)), "Mid-Market": (35, 0.06, (1, 5)), "SMB": (50, 0.0, (1, 3))}
"""segment: (share %, discount, quantity range per line)."""
LEGAL = {"North America": ["Inc.", "LLC", "Corp."], "EMEA": ["GmbH", "Ltd", "SAS", "B.V."],
         "APAC": ["Pte Ltd", "Pty Ltd", "K.K.", "Ltd"], "LATAM": ["S.A.", "Ltda.", "S.A. de C.V."]}  # fmt: skip
NAME_A = ["Northwind", "Bluepeak", "Crestline", "Ironwood", "Silverleaf", "Brightwater", "Redstone",
          "Oakridge", "Summit", "Harbor", "Pinecrest", "Granite", "Lumen", "Meridian", "Cobalt",
          "Evergreen", "Foxglove", "Highland", "Juniper", "Keystone", "Lakeside", "Maple", "Nova",
          "Orchard", "Polaris", "Quartz", "Riverbend", "Sterling", "Tidewater", "Vantage"]  # fmt: skip
NAME_B = ["Logistics", "Analytics", "Foods", "Health", "Robotics", "Media", "Legal", "Energy", "Textiles",
          "Architects", "Pharma", "Capital", "Motors", "Studios", "Retail", "Labs", "Consulting",
          "Foundry", "Airways", "Dental", "Insurance", "Travel", "Builders", "Farms"]  # fmt: skip
FIRST = ["Ana", "Ben", "Chen", "Dara", "Elif", "Femi", "Gita", "Hugo", "Iris", "Jonas", "Kenji", "Lena",
         "Mateo", "Nadia", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara"]  # fmt: skip
LAST = ["Alvarez", "Baker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Hoang", "Ito", "Jensen",
        "Kowalski", "Lopez", "Meyer", "Nakamura", "Okafor"]  # fmt: skip
TICKETS = {
    "damaged item": ["{p} arrived damaged", "Box crushed, {p} scratched", "{p} arrived with a cracked casing"],
    "defective product": ["{p} stopped working after a week", "{p} won't power on", "{p} keeps disconnecting"],
    "wrong item": ["Received the wrong item instead of {p}", "Order {o} is missing {p}"],
    "late delivery": ["Order {o} not delivered yet", "Where is order {o}?"],
    "billing": ["Invoice for order {o} shows the wrong amount", "Charged twice for order {o}"],
    "how-to": ["How do I set up the {p}?", "Firmware update for {p}"],
    "account": ["Cannot reset portal password", "Please add a second user to our account", "Update billing address"],
}  # fmt: skip
REFUND_REASONS = {
    "damaged item": "damaged in transit",
    "defective product": "defective",
    "wrong item": "wrong item",
}


def build(path: Path) -> None:
    """Write the sample database to `path` (which must be new or empty)."""
    rng = random.Random(SEED)
    products = [(c, n, p) for c, items in PRODUCTS.items() for n, p in items]
    customers = _customers(rng)
    orders, items = _orders(rng, customers, products)
    tickets, refunds = _tickets_and_refunds(rng, orders, items, products)
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
        conn.executemany(
            "INSERT INTO customers VALUES (?,?,?,?,?,?)", [(i, *c) for i, c in enumerate(customers, 1)]
        )
        conn.executemany(
            "INSERT INTO products VALUES (?,?,?,?)", [(i, n, c, p) for i, (c, n, p) in enumerate(products, 1)]
        )
        conn.executemany("INSERT INTO orders VALUES (?,?,?,?,?)", orders)
        conn.executemany("INSERT INTO order_items VALUES (?,?,?,?)", items)
        conn.executemany("INSERT INTO support_tickets VALUES (?,?,?,?,?,?,?,?)", tickets)
        conn.executemany("INSERT INTO refunds VALUES (?,?,?,?,?,?)", refunds)
        # Derived in SQL so `sales` always agrees with the orders it summarises.
        conn.execute("""
            INSERT INTO sales
            SELECT c.region,
                   strftime('%Y', o.order_date) || '-Q' || ((CAST(strftime('%m', o.order_date) AS INT) + 2) / 3),
                   i.product_id, ROUND(SUM(i.quantity * i.unit_price), 2), SUM(i.quantity)
            FROM order_items i JOIN orders o ON o.id = i.order_id JOIN customers c ON c.id = o.customer_id
            WHERE o.status != 'cancelled' GROUP BY 1, 2, 3 ORDER BY 2, 1, 3""")  # fmt: skip
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    conn.close()


def _customers(rng: random.Random) -> list[tuple[str, str, str, str, str]]:
    names = rng.sample([(a, b) for a in NAME_A for b in NAME_B], 600)
    start, span = date(2022, 6, 1), (date(2025, 9, 30) - date(2022, 6, 1)).days
    rows = []
    for a, b in names:
        region = rng.choices(list(REGIONS), weights=[35, 30, 22, 13])[0]
        segment = rng.choices(list(SEGMENTS), weights=[s[0] for s in SEGMENTS.values()])[0]
        slug = re.sub(r"[^a-z]+", "-", f"{a} {b}".lower())
        email = f"{rng.choice(FIRST).lower()}.{rng.choice(LAST).lower()}@{slug}.example"
        created = start + timedelta(days=rng.randrange(span))
        rows.append((f"{a} {b} {rng.choice(LEGAL[region])}", email, region, segment, created.isoformat()))
    return sorted(rows, key=lambda r: (r[4], r[0]))  # ids follow sign-up order


Customer = tuple[str, str, str, str, str]
Product = tuple[str, str, int]
Line = tuple[int, int, int, float]
Order = tuple[int, int, str, str, float]
Ticket = tuple[date, int, int | None, str, str, str]
"""(opened, customer, order or None, category, priority, subject)"""
Refund = tuple[date, int, float, str, str]
"""(date, order, amount, reason, status)"""


def _orders(
    rng: random.Random, customers: list[Customer], products: list[Product]
) -> tuple[list[Order], list[Line]]:
    orders, items = [], []
    for oid, (day, _, cid, region, y, q) in enumerate(_drafts(rng, customers), 1):
        picked = _pick_products(rng, oid, products, _category_weights(region, y, q))
        lines = _lines(rng, oid, picked, products, customers[cid - 1][3])
        status = _order_status(rng, oid, day)
        orders.append((oid, cid, day.isoformat(), status, round(sum(n * p for _, _, n, p in lines), 2)))
        items += lines
    return orders, items


def _drafts(rng: random.Random, customers: list[Customer]) -> list[tuple[date, float, int, str, int, int]]:
    """When each order is placed and by whom, in chronological order: (day, tie-break, customer, region, year,
    quarter)."""
    by_region: dict[str, list[int]] = {r: [] for r in REGIONS}
    for cid, c in enumerate(customers, 1):
        by_region[c[2]].append(cid)
    activity = {cid: rng.uniform(0.2, 2.0) * {"Enterprise": 3, "Mid-Market": 2, "SMB": 1}[c[3]]
                for cid, c in enumerate(customers, 1)}  # fmt: skip
    weights = {(r, y, q): base * (1 + 0.05 * i) * SEASON[q] * STORY.get((r, y, q), 1.0)
               for r, base in REGIONS.items() for i, (y, q) in enumerate(QUARTERS)}  # fmt: skip
    scale = TOTAL_ORDERS / sum(weights.values())
    drafts = []
    for (region, y, q), w in weights.items():
        first = date(y, 3 * q - 2, 1)
        days = ((date(y + 1, 1, 1) if q == 4 else date(y, 3 * q + 1, 1)) - first).days
        ids = by_region[region]
        for _ in range(round(w * scale)):
            day = first + timedelta(days=rng.randrange(days))
            eligible = ids[: max(1, bisect_right([customers[i - 1][4] for i in ids], day.isoformat()))]
            cid = rng.choices(eligible, weights=[activity[i] for i in eligible])[0]
            drafts.append((day, rng.random(), cid, region, y, q))
    drafts.sort()  # order ids are chronological
    return drafts


def _category_weights(region: str, y: int, q: int) -> dict[str, float]:
    weights: dict[str, float] = dict(CATEGORY_WEIGHT)
    if region == "APAC" and (y, q) == (2025, 3):
        weights["Monitors"] = 0.5  # the shortage: APAC customers could barely get monitors
    return weights


def _pick_products(
    rng: random.Random, oid: int, products: list[Product], weights: dict[str, float]
) -> list[int]:
    picked: list[int] = []
    if oid == DEMO_ORDER:
        picked = [_pid(products, "Vista 27 4K Monitor"), _pid(products, "Dock Pro USB-C Hub")]
    wanted = rng.choices([1, 2, 3, 4], weights=[40, 30, 20, 10])[0]
    while len(picked) < wanted:
        pid = rng.choices(range(1, len(products) + 1), weights=[weights[p[0]] for p in products])[0]
        if pid not in picked:
            picked.append(pid)
    return picked


def _lines(
    rng: random.Random, oid: int, picked: list[int], products: list[Product], segment: str
) -> list[Line]:
    _share, discount, (lo, hi) = SEGMENTS[segment]
    lines = []
    for pid in picked:
        price = products[pid - 1][2]
        # Fewer units of big-ticket items keeps one order from swinging a whole quarter.
        qty = rng.randint(lo, hi) if price < 900 else rng.randint(1, max(1, hi // 3))
        lines.append((oid, pid, qty, round(price * (1 - discount), 2)))
    return lines


def _order_status(rng: random.Random, oid: int, day: date) -> str:
    age = (AS_OF - day).days
    status = "processing" if age <= 3 else "shipped" if age <= 9 else "delivered"
    roll = rng.random()
    if oid == DEMO_ORDER:
        return "delivered"
    if status == "delivered" and roll < 0.065:
        return "cancelled" if roll < 0.035 else "returned"
    return status


def _tickets_and_refunds(
    rng: random.Random, orders: list[Order], items: list[Line], products: list[Product]
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    lines: dict[int, list[Line]] = {}
    for line in items:
        lines.setdefault(line[0], []).append(line)
    tickets: list[Ticket] = []
    refunds: list[Refund] = []
    for order in orders:
        ticket = _order_ticket(rng, order, lines[order[0]], products)
        if ticket is None:
            continue
        tickets.append((ticket[0], ticket[1], ticket[2], ticket[3], ticket[4], ticket[5]))
        refund = _refund(rng, order, ticket)
        if refund is not None:
            refunds.append(refund)
    for _ in range(40):  # account questions not tied to an order
        cid = rng.choice(orders)[1]
        opened = AS_OF - timedelta(days=rng.randrange(700))
        tickets.append(
            (opened, cid, None, "account", rng.choice(["low", "medium"]), rng.choice(TICKETS["account"]))
        )
    tickets.sort(key=lambda t: (t[0], t[2] or 0, t[5]))
    ticket_rows: list[tuple[object, ...]] = []
    for tid, (opened, cid, oid, category, priority, subject) in enumerate(tickets, 1):
        stamp = f"{opened.isoformat()} {rng.randint(7, 19):02d}:{rng.randrange(60):02d}"
        ticket_rows.append(
            (tid, cid, oid, stamp, category, priority, _ticket_status(rng, opened, oid), subject)
        )
    refunds.sort(key=lambda r: (r[0], r[1]))
    refund_rows: list[tuple[object, ...]] = [
        (i, oid, amt, why, st, d.isoformat()) for i, (d, oid, amt, why, st) in enumerate(refunds, 1)
    ]
    return ticket_rows, refund_rows


def _order_ticket(
    rng: random.Random, order: Order, lines: list[Line], products: list[Product]
) -> tuple[date, int, int, str, str, str, Line] | None:
    """The support ticket an order got, if any: (opened, customer, order, category, priority, subject, the line
    it is about)."""
    oid, cid, day, status, _total = order
    # Every return gets a ticket; about one in five other orders does too.
    if status == "cancelled" or (status != "returned" and oid != DEMO_ORDER and rng.random() > 0.22):
        return None
    opened = date.fromisoformat(day) + timedelta(days=rng.randint(2, 20))
    if opened > AS_OF:
        return None
    line = rng.choice(lines)
    category = rng.choices(list(TICKETS)[:-1], weights=[4, 3, 2, 2, 2, 2])[0]
    if status == "returned":
        category = rng.choice(list(REFUND_REASONS))
    subject = rng.choice(TICKETS[category]).format(p=products[line[1] - 1][1], o=oid)
    priority = rng.choices(["low", "medium", "high", "urgent"], weights=[3, 4, 2, 1])[0]
    if oid == DEMO_ORDER:
        opened = min(opened, AS_OF - timedelta(days=2))
        line, category, priority = lines[0], "damaged item", "high"
        subject = f"Order {oid}: Vista 27 4K Monitor arrived broken - screen cracked, box dented"
    return opened, cid, oid, category, priority, subject, line


def _refund(
    rng: random.Random, order: Order, ticket: tuple[date, int, int, str, str, str, Line]
) -> Refund | None:
    """The refund a ticket led to, if any: (date, order, amount, reason, status)."""
    oid, _cid, _day, status, total = order
    opened, category, line = ticket[0], ticket[3], ticket[6]
    if (
        category not in REFUND_REASONS
        or oid == DEMO_ORDER
        or not (status == "returned" or rng.random() < 0.5)
    ):
        return None
    amount = total if status == "returned" else line[2] * line[3]
    refunded = opened + timedelta(days=rng.randint(1, 10))
    if refunded > AS_OF:
        return None
    return refunded, oid, round(amount, 2), REFUND_REASONS[category], _refund_status(rng, refunded)


def _pid(products: list[tuple[str, str, int]], name: str) -> int:
    return next(i for i, p in enumerate(products, 1) if p[1] == name)


def _ticket_status(rng: random.Random, opened: date, order_id: int | None) -> str:
    if order_id == DEMO_ORDER:
        return "open"
    age = (AS_OF - opened).days
    if age <= 7:
        return rng.choice(["open", "open", "pending"])
    if age <= 30:
        return rng.choice(["open", "pending", "resolved", "resolved"])
    return rng.choices(["resolved", "closed", "open"], weights=[50, 47, 3])[0]


def _refund_status(rng: random.Random, created: date) -> str:
    if (AS_OF - created).days <= 10:
        return rng.choice(["requested", "approved"])
    return rng.choices(["paid", "rejected"], weights=[9, 1])[0]
