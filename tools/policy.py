"""Validation checks that team files can require of a role's answers (`validate: {check: NAME}`)."""

from __future__ import annotations

import re

from parley.tools import check

_INTERNAL = re.compile(
    r"\bselect\b.+\bfrom\b|\bsqlite\b|\binternal note\b|\bstaff only\b|\btable [a-z_]+\b",
    re.IGNORECASE | re.DOTALL,
)


@check
def no_internal_details(text: str) -> str | None:
    """A reply to a customer must not expose queries, table names or staff-only notes."""
    found = _INTERNAL.search(text)
    if found:
        return f"the reply exposes internal details ({found.group(0)[:40]!r}); rewrite it for the customer"
    return None
