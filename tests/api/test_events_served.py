"""The event stream over a real HTTP server: read live until a decision is needed, the connection dropped, the
decision made meanwhile, then a reconnect with Last-Event-ID gets what it missed from the store and goes on live."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
from conftest import Served

API = "/api/v1"


def read_until(response: httpx.Response, last_type: str) -> list[dict[str, Any]]:
    """Server-Sent Events as they arrive, up to the first of type `last_type`."""
    return read_until_in(response.iter_lines(), last_type)


def read_until_in(lines: Iterator[str], last_type: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "data" in fields:
                ident = int(fields["id"]) if "id" in fields else None
                events.append({"id": ident, "event": fields["event"], "data": json.loads(fields["data"])})
                if fields["event"] == last_type:
                    return events
            fields = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended before a {last_type} event: {[e['event'] for e in events]}")


def test_a_dropped_stream_resumes_from_the_store_and_goes_on_live(served: Served) -> None:
    with httpx.Client(base_url=served.url, headers=served.auth("alice"), timeout=30) as client:
        r = client.post(
            f"{API}/conversations",
            json={
                "team": "customer-support",
                "model": "scripted:refund.yaml",
                "message": "Order 1042 arrived broken",
            },
        )
        assert r.status_code == 201, r.text
        tid = r.json()["id"]
        with client.stream("GET", f"{API}/conversations/{tid}/events") as live:
            assert live.headers["content-type"].startswith("text/event-stream")
            before = read_until(live, "approval_request")
        # The connection is gone; the decision is made meanwhile.
        request_id = before[-1]["data"]["request_id"]
        r = client.post(f"{API}/conversations/{tid}/approvals/{request_id}", json={"approve": True})
        assert r.status_code == 200, r.text
        with client.stream(
            "GET", f"{API}/conversations/{tid}/events", headers={"last-event-id": str(before[-1]["id"])}
        ) as again:
            after = read_until(again, "result")
    ids = [e["id"] for e in before + after]
    assert ids == list(range(1, len(ids) + 1)), "every event once, in the store's order"
    decision = next(e for e in after if e["event"] == "approval_decision")
    assert decision["data"]["approved"] is True and decision["data"]["actor"] == "alice"
    assert after[-1]["data"]["stop_reason"] == "stop_text" and "refund" in after[-1]["data"]["content"]


def test_with_chunks_the_text_streams_live_before_its_finished_message(served: Served) -> None:
    with httpx.Client(base_url=served.url, headers=served.auth("alice"), timeout=30) as client:
        r = client.post(
            f"{API}/conversations",
            json={
                "team": "customer-support",
                "model": "scripted:refund.yaml",
                "message": "Order 1042 arrived broken",
            },
        )
        tid = r.json()["id"]
        with client.stream("GET", f"{API}/conversations/{tid}/events", params={"chunks": True}) as live:
            lines = live.iter_lines()
            before = read_until_in(lines, "approval_request")
            request_id = before[-1]["data"]["request_id"]
            r = client.post(f"{API}/conversations/{tid}/approvals/{request_id}", json={"approve": True})
            assert r.status_code == 200, r.text
            after = read_until_in(lines, "result")
    final = next(e for e in reversed(after) if e["event"] == "message")
    streamed = [
        e for e in after[: after.index(final)] if e["event"] == "chunk" and e["data"]["source"] == "triage"
    ]
    assert "".join(e["data"]["content"] for e in streamed).strip() == final["data"]["content"]
    assert all(e["id"] is None for e in streamed), "chunks are not stored: no id"
    stored = [e["id"] for e in before + after if e["id"] is not None]
    assert stored == list(range(1, len(stored) + 1))
