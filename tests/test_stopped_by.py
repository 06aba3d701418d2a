"""Who stopped a run: its result names the person (a shared room's member), and each page words it for its reader,
live and reopened: "Stopped by bob" to the others, "Stopped by you" to bob. Approvals and escalations already
name who decided, in the live view and the stored one alike."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from _support import collect, team_yaml

from parley import Conversation
from parley._outcome import ended_in_words, ending, stop_detail, stopped_by
from parley.events import (
    ApprovalDecisionEvent,
    ChunkEvent,
    EscalationResolvedEvent,
    Event,
    RunResult,
)
from parley.spec import TerminationSpec
from parley.web._controls import status_line
from parley.web._datalayer import thread_view
from parley.web._format import decision_text, note, resolved_text

Write = Callable[[str, str], Path]


def _result(detail: str) -> RunResult:
    return RunResult(
        source="parley",
        stop_reason="stopped",
        turns=2,
        detail=detail,
        prompt_tokens=10,
        completion_tokens=2,
        cost_usd=0.0,
        turn=2,
    )


def test_the_stop_names_who_stopped_to_everyone_but_them() -> None:
    by_bob = _result("stopped by bob")
    assert status_line(by_bob, 3, viewer="alice").startswith("**Run ended** · **Stopped by bob** at turn 3 ·")
    assert status_line(by_bob, 3, viewer="bob").startswith("**Run ended** · **Stopped by you** at turn 3 ·")
    assert ended_in_words("stopped", "stopped by bob") == "Stopped by bob"  # the terminal: whoever reads
    assert ended_in_words("stopped", "stopped by bob", 2, viewer="bob") == "Stopped by you at turn 2"
    # A run stopped from the terminal or by a program says nothing of whom: it reads as before.
    assert ending("stopped", "stopped by the user", 3, viewer="alice") == ("Stopped by you", " at turn 3")
    assert ending("stopped", "stopped by the user") == ("Stopped by you", "")
    assert ending("stopped", "") == ("Stopped by you", "")
    assert stopped_by("stopped by bob") == "bob" and stopped_by("stopped by the user") == ""
    assert stopped_by("the team finished") == ""


def test_the_result_s_detail_keeps_the_stopper() -> None:
    limits = TerminationSpec()
    kw = {"settled": None, "used_tokens": 0, "error": None}
    assert stop_detail("stopped", limits, ended="stopped by bob", **kw) == "stopped by bob"  # type: ignore[arg-type]
    assert stop_detail("stopped", limits, ended="", **kw) == "stopped by the user"  # type: ignore[arg-type]
    # The engine's own words of an earlier limit are not a person's name.
    assert stop_detail("stopped", limits, ended="reached 8 turns", **kw) == "stopped by the user"  # type: ignore[arg-type]


async def test_a_run_stopped_by_a_member_names_them_and_the_first_stop_holds(write: Write) -> None:
    team = write("team.yaml", team_yaml(max_turns=6))
    script = write(
        "script.yaml",
        """
        roles:
          alpha: ["Alpha finished its turn", "Alpha resumes"]
          beta: ["Beta is halfway through a long answer when", "Beta again"]
        delay_s: 0.5
        """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    run = conv.start("Draft it", author="alice")

    def on_event(ev: Event) -> None:
        if isinstance(ev, ChunkEvent) and ev.source == "beta":
            run.stop(actor="bob")
            run.stop(actor="carol")  # too late: bob's stop holds

    events = await collect(run, on_event)
    result = events[-1]
    assert isinstance(result, RunResult)
    assert (result.stop_reason, result.detail) == ("stopped", "stopped by bob")
    steps, _ = thread_view("t1", events, viewer="alice")
    assert steps[-1]["output"].startswith("**Run ended** · **Stopped by bob** at turn 2")
    steps, _ = thread_view("t1", events, viewer="bob")
    assert steps[-1]["output"].startswith("**Run ended** · **Stopped by you** at turn 2")
    await conv.close()


def test_approvals_and_escalations_say_who_decided_live_and_stored() -> None:
    approved = ApprovalDecisionEvent(
        source="user", request_id="r1", name="publish", approved=True, actor="bob", turn=2
    )
    denied = ApprovalDecisionEvent(
        source="user", request_id="r2", name="publish", approved=False, reason="not yet", actor="bob", turn=2
    )
    assert decision_text(approved) == "`publish` approved by bob"  # live
    assert note(approved) == ("parley", "`publish` approved by bob")  # a reopened thread
    assert decision_text(denied) == "`publish` denied by bob: not yet"
    resolved = EscalationResolvedEvent(
        source="user", escalation_id="e1", decision="continue", actor="bob", content="", turn=3
    )
    assert resolved_text(resolved) == "✔ Decided by **bob**: let the team continue as it was"
