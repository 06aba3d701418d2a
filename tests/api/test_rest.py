"""The REST and SSE API through httpx: a conversation created, run, streamed, resumed with Last-Event-ID after a
human decision, stopped, exported; bad input refused in words; two users' tokens kept apart."""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from conftest import DUO_SCRIPT, Api

from parley.api._sse import LiveChunks, stream
from parley.events import (
    ApprovalRequestEvent,
    ChunkEvent,
    EscalationEvent,
    Event,
    MessageEvent,
    QuestionEvent,
)
from parley.store import EventRow

API = "/api/v1"
SAFETY_S = 30.0


def parse_sse(text: str) -> list[dict[str, Any]]:
    """Each event of a Server-Sent Events body: its id, event and data (comments and `retry:` left out)."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        if "data" in fields:
            out.append(
                {"id": int(fields["id"]), "event": fields["event"], "data": json.loads(fields["data"])}
            )
    return out


async def create(api: Api, user: str, team: str, model: str, message: str) -> str:
    r = await api.client.post(
        f"{API}/conversations",
        json={"team": team, "model": model, "message": message},
        headers=api.auth(user),
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def waiting_approval(api: Api, tid: str) -> ApprovalRequestEvent:
    conv = api.hub.live(tid)
    assert conv is not None and conv.current_run is not None
    async with asyncio.timeout(SAFETY_S):
        async for ev in conv.current_run:
            if isinstance(ev, ApprovalRequestEvent):
                return ev
    raise AssertionError("the run ended without asking for an approval")


async def test_a_token_is_needed_and_a_wrong_one_is_refused_in_words(api: Api) -> None:
    r = await api.client.get(f"{API}/teams")
    assert r.status_code == 401
    assert "Authorization: Bearer" in r.json()["detail"] and r.headers["www-authenticate"] == "Bearer"
    forged = api.tokens["alice"][:-4] + "AAAA"
    r = await api.client.get(f"{API}/teams", headers={"authorization": f"Bearer {forged}"})
    assert r.status_code == 401 and "not valid" in r.json()["detail"]
    r = await api.client.get(f"{API}/teams", headers=api.auth("alice"))
    assert r.status_code == 200
    duo = next(t for t in r.json() if t["name"] == "duo")
    assert [role["name"] for role in duo["roles"]] == ["writer", "editor"] and duo["pattern"] == "round_robin"


async def test_a_conversation_runs_and_its_events_stream_with_their_store_numbers(api: Api) -> None:
    tid = await create(api, "alice", "duo", "scripted:duo.yaml", "What is the capital of France?")
    r = await api.client.get(
        f"{API}/conversations/{tid}/events", params={"until_result": True}, headers=api.auth("alice")
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    assert [e["id"] for e in events] == list(range(1, len(events) + 1))
    said = [(e["data"]["source"], e["data"]["content"]) for e in events if e["event"] == "message"]
    assert said == [("writer", "Paris is the capital of France."), ("editor", "Correct. APPROVED")]
    assert events[-1]["event"] == "result" and events[-1]["data"]["stop_reason"] == "stop_text"
    # The conversation reads back as stored, and is listed.
    read = (await api.client.get(f"{API}/conversations/{tid}", headers=api.auth("alice"))).json()
    assert [e["seq"] for e in read["events"]] == [e["id"] for e in events] and read["running"] is False
    listed = (await api.client.get(f"{API}/conversations", headers=api.auth("alice"))).json()
    assert [c["id"] for c in listed] == [tid] and listed[0]["title"] == "What is the capital of France?"
    # Continued with another message: a second run, streamed from where the client stopped.
    r = await api.client.post(
        f"{API}/conversations/{tid}/messages", json={"text": "And Lyon?"}, headers=api.auth("alice")
    )
    assert r.status_code == 202 and r.json()["run"] == 2
    r = await api.client.get(
        f"{API}/conversations/{tid}/events",
        params={"until_result": True},
        headers={**api.auth("alice"), "last-event-id": str(events[-1]["id"])},
    )
    more = parse_sse(r.text)
    assert more[0]["id"] == events[-1]["id"] + 1 and more[-1]["event"] == "result"
    assert more[-1]["data"]["content"] == "Right, and it is known for its food. APPROVED"


async def test_a_stream_resumed_with_last_event_id_replays_from_the_store_then_goes_live(api: Api) -> None:
    tid = await create(api, "alice", "customer-support", "scripted:refund.yaml", "Order 1042 arrived broken")
    request = await waiting_approval(api, tid)
    read = (await api.client.get(f"{API}/conversations/{tid}", headers=api.auth("alice"))).json()
    assert [a["request_id"] for a in read["pending"]["approvals"]] == [request.request_id]
    stored = parse_sse(
        (
            await api.client.get(
                f"{API}/conversations/{tid}/events", params={"follow": False}, headers=api.auth("alice")
            )
        ).text
    )
    asked = next(e for e in stored if e["event"] == "approval_request")
    cut = asked["id"] - 2  # the client lost the connection a little before the request arrived
    resumed = asyncio.create_task(
        api.client.get(
            f"{API}/conversations/{tid}/events",
            params={"until_result": True},
            headers={**api.auth("alice"), "last-event-id": str(cut)},
        )
    )
    r = await api.client.post(
        f"{API}/conversations/{tid}/approvals/{request.request_id}",
        json={"approve": True},
        headers=api.auth("alice"),
    )
    assert r.status_code == 200, r.text
    async with asyncio.timeout(SAFETY_S):
        events = parse_sse((await resumed).text)
    assert [e["id"] for e in events] == list(range(cut + 1, cut + 1 + len(events)))
    assert [e["event"] for e in events[:2]] == [stored[cut]["event"], stored[cut + 1]["event"]]
    decision = next(e for e in events if e["event"] == "approval_decision")
    assert decision["data"]["approved"] is True and decision["data"]["actor"] == "alice"
    assert events[-1]["event"] == "result" and "refund" in events[-1]["data"]["content"]
    everything = (await api.client.get(f"{API}/conversations/{tid}", headers=api.auth("alice"))).json()[
        "events"
    ]
    assert [e["seq"] for e in everything] == [e["id"] for e in stored[:cut]] + [e["id"] for e in events]
    # The audit export, as `parley audit ID` gives it.
    md = await api.client.get(f"{API}/conversations/{tid}/audit", headers=api.auth("alice"))
    assert md.headers["content-type"].startswith("text/markdown")
    assert (
        f"# Audit trail of {tid} (customer-support)" in md.text
        and "| alice | approve | approved | tool: issue_refund |" in md.text
    )
    jl = await api.client.get(
        f"{API}/conversations/{tid}/audit", params={"format": "jsonl"}, headers=api.auth("alice")
    )
    rows = [json.loads(line) for line in jl.text.splitlines()]
    approved = next(r for r in rows if r["what"] == "approve")
    assert (approved["who"], approved["decision"], approved["detail"]["tool"]) == (
        "alice",
        "approved",
        "issue_refund",
    )


async def test_stop_ends_the_run_waiting_on_a_person_and_a_denial_reaches_the_agent(api: Api) -> None:
    tid = await create(api, "alice", "customer-support", "scripted:refund.yaml", "Order 1042 arrived broken")
    await waiting_approval(api, tid)
    r = await api.client.post(f"{API}/conversations/{tid}/stop", headers=api.auth("alice"))
    assert r.json() == {"stopped": True}
    events = parse_sse(
        (
            await api.client.get(
                f"{API}/conversations/{tid}/events", params={"follow": False}, headers=api.auth("alice")
            )
        ).text
    )
    assert events[-1]["event"] == "result" and events[-1]["data"]["stop_reason"] == "stopped"
    r = await api.client.post(f"{API}/conversations/{tid}/stop", headers=api.auth("alice"))
    assert r.json() == {"stopped": False}
    r = await api.client.post(
        f"{API}/conversations/{tid}/approvals/0123456789abcdef0123456789abcdef",
        json={"approve": True},
        headers=api.auth("alice"),
    )
    assert r.status_code == 409 and "no run is in progress" in r.json()["detail"]


async def test_bad_input_is_refused_with_what_to_send_instead(api: Api) -> None:
    alice = api.auth("alice")
    r = await api.client.post(f"{API}/conversations", json={"team": "nope"}, headers=alice)
    assert r.status_code == 404 and "duo" in r.json()["detail"]
    r = await api.client.post(
        f"{API}/conversations", json={"team": "duo", "model": "scripted:../../etc/passwd"}, headers=alice
    )
    assert r.status_code == 400 and "PARLEY_SCRIPTS" in r.json()["detail"]
    r = await api.client.post(f"{API}/conversations", json={"team": "duo", "message": "  "}, headers=alice)
    assert r.status_code == 400 and "empty" in r.json()["detail"]
    r = await api.client.get(f"{API}/conversations/..%2F..%2Fetc", headers=alice)
    assert r.status_code in (400, 404)
    r = await api.client.get(f"{API}/conversations/not-an-id", headers=alice)
    assert r.status_code == 400 and "not a conversation id" in r.json()["detail"]
    r = await api.client.get(f"{API}/conversations/{'0' * 32}", headers=alice)
    assert r.status_code == 404
    tid = await create(api, "alice", "duo", "scripted:duo.yaml", "Hi")
    r = await api.client.post(
        f"{API}/conversations/{tid}/escalations/abc", json={"choose": 1, "proceed": True}, headers=alice
    )
    assert r.status_code == 400 and "exactly one" in r.json()["detail"]
    r = await api.client.post(
        f"{API}/conversations/{tid}/messages", json={"text": "x", "mode": "shout"}, headers=alice
    )
    assert r.status_code == 422


async def test_a_token_sees_only_its_users_conversations(api: Api) -> None:
    tid = await create(api, "alice", "duo", "scripted:duo.yaml", "Alice's question")
    bob = api.auth("bob")
    assert (await api.client.get(f"{API}/conversations", headers=bob)).json() == []
    for method, path, body in [
        ("GET", f"/conversations/{tid}", None),
        ("GET", f"/conversations/{tid}/events", None),
        ("GET", f"/conversations/{tid}/audit", None),
        ("POST", f"/conversations/{tid}/messages", {"text": "mine now"}),
        ("POST", f"/conversations/{tid}/stop", None),
        ("POST", f"/conversations/{tid}/questions/abc", {"text": "yes"}),
    ]:
        r = await api.client.request(method, API + path, json=body, headers=bob)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["detail"].startswith("This conversation is not yours") and "bob" in r.json()["detail"]
    events = (await api.client.get(f"{API}/conversations/{tid}", headers=api.auth("alice"))).json()["events"]
    assert not any(e["event"].get("content") == "mine now" for e in events)


async def test_a_revoked_token_stops_working_and_its_last_use_is_kept(api: Api) -> None:
    assert (await api.client.get(f"{API}/teams", headers=api.auth("bob"))).status_code == 200
    [row] = await api.store.tokens_of("bob")
    assert row.label == "tests" and row.last_used_at is not None
    assert await api.store.revoke_token(row.id)
    r = await api.client.get(f"{API}/teams", headers=api.auth("bob"))
    assert r.status_code == 401
    await api.store.remove_user("alice")
    r = await api.client.get(f"{API}/teams", headers=api.auth("alice"))
    assert r.status_code == 401, "a removed user's token signs nobody in"


async def waiting_question(api: Api, tid: str) -> QuestionEvent:
    conv = api.hub.live(tid)
    assert conv is not None and conv.current_run is not None
    async with asyncio.timeout(SAFETY_S):
        async for ev in conv.current_run:
            if isinstance(ev, QuestionEvent):
                return ev
    raise AssertionError("the run ended without a question")


async def test_a_roles_question_is_answered_over_the_api(api: Api) -> None:
    tid = await create(api, "alice", "planner", "scripted:plan.yaml", "Make a sales plan")
    question = await waiting_question(api, tid)
    read = (await api.client.get(f"{API}/conversations/{tid}", headers=api.auth("alice"))).json()
    assert [q["content"] for q in read["pending"]["questions"]] == ["Which region should the plan cover?"]
    r = await api.client.post(
        f"{API}/conversations/{tid}/questions/{question.question_id}",
        json={"text": "EMEA only"},
        headers=api.auth("alice"),
    )
    assert r.status_code == 200, r.text
    r = await api.client.post(
        f"{API}/conversations/{tid}/questions/{question.question_id}",
        json={"text": "again"},
        headers=api.auth("alice"),
    )
    assert r.status_code in (404, 409), "a question is answered once"
    events = parse_sse(
        (
            await api.client.get(
                f"{API}/conversations/{tid}/events", params={"until_result": True}, headers=api.auth("alice")
            )
        ).text
    )
    answer = next(e for e in events if e["event"] == "answer")
    assert (answer["data"]["content"], answer["data"]["actor"]) == ("EMEA only", "alice")
    assert events[-1]["data"]["content"] == "Plan for the region given."


async def test_an_interrupt_cuts_the_turn_short_and_the_team_goes_on_with_it(api: Api) -> None:
    tid = await create(api, "alice", "planner", "scripted:plan.yaml", "Make a sales plan")
    await waiting_question(api, tid)
    r = await api.client.post(
        f"{API}/conversations/{tid}/messages",
        json={"text": "Cover EMEA", "mode": "interrupt"},
        headers=api.auth("alice"),
    )
    assert r.status_code == 202 and r.json() == {"run": 1, "running": True}
    events = parse_sse(
        (
            await api.client.get(
                f"{API}/conversations/{tid}/events", params={"until_result": True}, headers=api.auth("alice")
            )
        ).text
    )
    kinds = [e["event"] for e in events]
    assert kinds.index("human_queued") < kinds.index("message"), (
        "the turn waiting on the question was cut short"
    )
    delivered = [e["data"] for e in events if e["event"] == "human_message"]
    assert [(d["content"], d["mode"]) for d in delivered] == [
        ("Make a sales plan", "task"),
        ("Cover EMEA", "interrupt"),
    ]
    assert events[-1]["event"] == "result" and events[-1]["data"]["content"] == "Plan for the region given."


async def test_an_escalation_is_settled_over_the_api(api: Api) -> None:
    tid = await create(api, "alice", "critique-loop", "scripted:loop.yaml", "Write")
    conv = api.hub.live(tid)
    assert conv is not None and conv.current_run is not None
    async with asyncio.timeout(SAFETY_S):
        escalation = await anext(e async for e in conv.current_run if isinstance(e, EscalationEvent))
    read = (await api.client.get(f"{API}/conversations/{tid}", headers=api.auth("alice"))).json()
    [waiting] = read["pending"]["escalations"]
    assert [(p["who"], p["text"]) for p in waiting["positions"]] == [
        ("writer", "draft 1"),
        ("critic", "too long"),
    ]
    url = f"{API}/conversations/{tid}/escalations/{escalation.escalation_id}"
    r = await api.client.post(url, json={"choose": 3}, headers=api.auth("alice"))
    assert r.status_code == 400 and "from 1 to 2" in r.json()["detail"]
    r = await api.client.post(url, json={"choose": 1}, headers=api.auth("alice"))
    assert r.status_code == 200, r.text
    events = parse_sse(
        (
            await api.client.get(
                f"{API}/conversations/{tid}/events", params={"until_result": True}, headers=api.auth("alice")
            )
        ).text
    )
    resolved = next(e["data"] for e in events if e["event"] == "escalation_resolved")
    assert resolved["actor"] == "alice"
    assert events[-1]["data"]["content"] == "draft 1" and "settled by alice" in events[-1]["data"]["detail"]


async def test_a_reply_that_comes_whole_streams_its_text_before_its_message(api: Api, scripts: Path) -> None:
    """The editor's reply comes whole (no delay): its one piece is yielded right before the call's result, while the
    call's usage waits in the run's outbox for its message, so the piece, the usage and the message are written
    and shown together. The write wakes the event stream before anything of the batch is shown: the stream must
    still be sent the piece before the message (it was sent after it, now and then under load)."""
    (scripts / "paced.yaml").write_text(
        textwrap.dedent(DUO_SCRIPT) + "role_delay_s: {writer: 0.5, editor: 0}\n", encoding="utf-8"
    )
    tid = await create(api, "alice", "duo", "scripted:paced.yaml", "The capital of France?")
    frames = stream(api.hub, tid, 0, user="alice", follow=True, until_result=True, chunks=True)
    events: list[tuple[str, dict[str, Any]]] = []
    async with asyncio.timeout(30):
        async for text in frames:
            for block in text.split("\n\n"):
                fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
                if "event" in fields:
                    events.append((fields["event"], json.loads(fields["data"])))
    said = [data for kind, data in events if kind == "message" and data["source"] == "editor"]
    assert said, events
    streamed: list[str] = []
    for kind, data in events:
        if kind == "chunk" and data["source"] == "editor":
            streamed.append(data["content"])
        if kind == "message" and data["source"] == "editor":
            break
    assert "".join(streamed).strip() == said[0]["content"], "the editor's text came after its message"


def test_pieces_go_between_the_stored_events_they_came_between() -> None:
    """A stream that begins to follow a run in the middle of a message: the pieces shown before the run's next stored
    event go right before that event, each later piece right after the stored event shown before it, and a piece
    that followed an event the stream has not read yet waits for the next read."""

    class Shown:
        """The run's side of LiveChunks: who listens to what it shows."""

        def __init__(self) -> None:
            self.listeners: list[Callable[[Event, int | None], None]] = []

        def on_shown(self, listener: Callable[[Event, int | None], None]) -> Callable[[], None]:
            self.listeners.append(listener)
            return lambda: self.listeners.remove(listener)

    run = Shown()
    conversation = SimpleNamespace(current_run=run, running=True)
    live = LiveChunks(cast(Any, SimpleNamespace(live=lambda _tid: conversation)), "t", asyncio.Event())
    assert live.before_read() == [] and len(run.listeners) == 1
    (show,) = run.listeners

    def piece(text: str) -> None:
        show(ChunkEvent(source="writer", content=text, turn=2), None)

    def row(seq: int, kind: str = "message") -> EventRow:
        return EventRow(seq=seq, type=kind, payload={"seq": seq}, created_at=datetime.now(UTC))

    piece("a")  # the writer's message was under way when the stream began to follow
    show(MessageEvent(source="writer", content="a b", turn=2), 7)
    piece("c")
    show(MessageEvent(source="editor", content="c", turn=3), 8)
    piece("d")  # after 8, which this read does not hold

    def sent(frames: list[str]) -> list[str]:
        return [
            json.loads(f.split("data: ", 1)[1])["content" if "event: chunk" in f else "seq"] for f in frames
        ]

    assert sent(live.with_rows([row(6), row(7)], 5)) == [6, "a", 7, "c"]
    assert sent(live.with_rows([row(8)], 7)) == [8, "d"]
    live.close()
    assert run.listeners == []
