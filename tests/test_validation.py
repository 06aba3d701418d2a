"""Validation rules: a failing answer goes back to its role with what is wrong; after the retries a
human settles it (Run API here, CLI and web chat elsewhere); every step is in the audit trail."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _support import collect, team_yaml

from parley import Conversation
from parley.errors import TeamFileError
from parley.events import (
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    MessageEvent,
    RunResult,
    ValidationEvent,
)
from parley.spec import load_team_file
from parley.store import Store

Write = Callable[[str, str], Path]

RULES = """
    validate:
      json_schema:
        type: object
        required: [verdict, reason]
        properties:
          verdict: {enum: [approve, reject]}
          reason: {type: string, minLength: 5}
      not_contains: [lorem]
      retries: 1
"""


def _team(write: Write) -> Path:
    text = team_yaml(roles=("checker",), max_turns=1).replace(
        "    prompt: You are checker.\n", "    prompt: You are checker.\n" + RULES.lstrip("\n")
    )
    return write("team.yaml", text)


def _script(write: Write, *replies: str) -> str:
    body = "".join(f"    - {r!r}\n" for r in replies)
    return "scripted:" + str(write("s.yaml", "roles:\n  checker:\n" + body))


async def test_a_failing_answer_is_corrected_by_its_role(write: Write) -> None:
    model = _script(write, "lorem ipsum", '{"verdict": "approve", "reason": "figures add up"}')
    conv = Conversation(_team(write), model=model)
    events = await collect(conv.start("Check the figures"))
    checks = [e for e in events if isinstance(e, ValidationEvent)]
    assert [(c.passed, c.attempt) for c in checks] == [(False, 1), (True, 2)]
    assert any("must be JSON" in p for p in checks[0].problems) and any(
        "lorem" in p for p in checks[0].problems
    )
    # The role was told exactly what was wrong.
    script = conv.pool.scripts[0]
    correction = script.calls[1].messages[-1].content
    assert "does not pass this team's checks" in correction and "lorem" in correction
    messages = [e for e in events if isinstance(e, MessageEvent)]
    assert [m.content for m in messages] == ['{"verdict": "approve", "reason": "figures add up"}']
    assert events[-1].stop_reason == "max_turns"


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ({"choose": 1}, '{"verdict": "maybe", "reason": "unsure"}'),
        (
            {"text": '{"verdict": "reject", "reason": "the human says no"}'},
            '{"verdict": "reject", "reason": "the human says no"}',
        ),
        ({"proceed": True}, '{"verdict": "maybe", "reason": "unsure"}'),
    ],
)
async def test_after_the_retries_a_human_settles_it(
    write: Write, how: dict[str, object], expected: str
) -> None:
    model = _script(write, "lorem", '{"verdict": "maybe", "reason": "unsure"}')
    conv = Conversation(_team(write), model=model)
    run = conv.start("Check the figures")

    def on_event(ev: Event) -> None:
        if isinstance(ev, EscalationEvent):
            assert run.pending_escalations == [ev]
            run.resolve(ev.escalation_id, **how)  # type: ignore[arg-type]

    events = await collect(run, on_event)
    kinds = [
        e.type for e in events if e.type in ("validation", "escalation", "escalation_resolved", "message")
    ]
    assert kinds == ["validation", "validation", "escalation", "escalation_resolved", "message"]
    esc = next(e for e in events if isinstance(e, EscalationEvent))
    assert esc.kind == "validation" and esc.source == "checker"
    assert esc.positions[0].text == '{"verdict": "maybe", "reason": "unsure"}'
    assert "'maybe' is not one of" in esc.content
    final = next(e for e in events if isinstance(e, MessageEvent))
    assert final.source == "checker" and final.content == expected
    assert run.pending_escalations == []


async def test_stopping_leaves_the_escalation_open_on_record(write: Write) -> None:
    model = _script(write, "lorem", "lorem again")
    conv = Conversation(_team(write), model=model)
    run = conv.start("Check the figures")
    events = await collect(run, lambda ev: run.stop() if isinstance(ev, EscalationEvent) else None)
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "stopped"
    closing = [e for e in events if isinstance(e, EscalationResolvedEvent)]
    assert len(closing) == 1 and closing[0].decision == "unresolved" and closing[0].actor == "parley"
    assert not any(isinstance(e, MessageEvent) for e in events)  # nothing was settled silently


async def test_resolve_refuses_bad_choices(write: Write) -> None:
    conv = Conversation(_team(write), model=_script(write, "lorem", "lorem"))
    run = conv.start("Check")
    problems: list[str] = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, EscalationEvent):
            for bad in ({"choose": 2}, {}, {"choose": 1, "proceed": True}):
                try:
                    run.resolve(ev.escalation_id, **bad)  # type: ignore[arg-type]
                except Exception as exc:
                    problems.append(str(exc))
            run.resolve(ev.escalation_id, proceed=True)

    await collect(run, on_event)
    assert problems[0] == "choose a position from 1 to 1, not 2"
    assert all("exactly one of" in p for p in problems[1:])


async def test_the_audit_trail_has_every_step_in_order(write: Write, store: Store) -> None:
    model = _script(write, "lorem", "lorem again")
    conv = Conversation(_team(write), model=model)
    tid = await store.create_thread("alice", conv.team.name, conv.model, "audit")
    conv.attach(store, tid)
    run = conv.start("Check the figures")

    def on_event(ev: Event) -> None:
        if isinstance(ev, EscalationEvent):
            run.resolve(
                ev.escalation_id, text='{"verdict": "reject", "reason": "numbers are off"}', actor="dana"
            )

    await collect(run, on_event)
    rows = await store.audit_log(tid)
    steps = [(r.actor, r.action, r.detail["decision"]) for r in rows]
    assert steps == [
        ("user", "task", "delivered"),
        ("checker", "validation", "failed"),
        ("checker", "validation", "failed"),
        ("checker", "escalation", "waiting"),
        ("dana", "escalation resolved", "write"),
    ]
    assert all(r.detail["run"] == 1 and r.detail["turn"] >= 0 for r in rows)


def test_rules_are_checked_when_the_team_file_loads(write: Write) -> None:
    text = team_yaml(roles=("checker",)).replace(
        "    prompt: You are checker.\n",
        """    prompt: You are checker.
    validate:
      regex: "([a-z"
      retries: 11
""",
    )
    with pytest.raises(TeamFileError) as err:
        load_team_file(write("bad.yaml", text))
    message = str(err.value)
    assert "does not compile" in message and "retries" in message and "bad.yaml:" in message
