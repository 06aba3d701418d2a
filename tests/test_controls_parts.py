"""The web chat's run controls, without a browser: the closing line's words, approvals cancelled on record,
interjections not joined yet kept on a reopened page."""

from __future__ import annotations

import asyncio

from parley._decisions import Decisions, was_cancelled
from parley._outbox import audit_record
from parley._render import summary
from parley.events import (
    ApprovalDecisionEvent,
    Event,
    HumanMessageEvent,
    HumanQueuedEvent,
    MessageEvent,
    RunResult,
    RunStartedEvent,
)
from parley.web._controls import closing_text, queued_bubbles, status_line


def _result(reason: str, detail: str = "", turns: int = 3) -> RunResult:
    return RunResult.model_validate(
        {
            "source": "parley",
            "stop_reason": reason,
            "turns": turns,
            "prompt_tokens": 1200,
            "completion_tokens": 34,
            "cost_usd": None,
            "detail": detail,
        }
    )


def test_the_closing_line_speaks_plainly() -> None:
    stopped = status_line(_result("stopped", "stopped by the user", 2), 3)
    assert stopped.startswith("**Run ended** · **Stopped by you** at turn 3 · 2 turns · 1,200 prompt + 34")
    limit = status_line(_result("max_turns", "reached 8 turns", 8), 8)
    assert "**Turn limit reached**: reached 8 turns · 8 turns" in limit
    done = status_line(_result("stop_text", "editor said APPROVE"), 3)
    assert "**Finished**: editor said APPROVE" in done
    for line in (stopped, limit, done, status_line(_result("completed", "the team finished"), 3)):
        assert "stopped: " not in line and "max_turns" not in line and "stop_text" not in line


def test_the_closing_line_counts_the_turns_the_chart_counts() -> None:
    events: list[Event] = [
        MessageEvent(source=name, content="x", turn=t) for t, name in enumerate(("a", "b", "a", "verdict"), 1)
    ]
    chart = [("a", 10, 2, 2), ("b", 5, 1, 1), ("verdict", 0, 0, 1)]
    line = closing_text(_result("completed", "consensus", turns=3), events, chart)
    assert "· 4 turns ·" in line  # the verdict's turn 4 is one of them


def test_an_approval_left_waiting_is_cancelled_on_record() -> None:
    async def go() -> list[Event]:
        emitted: list[Event] = []

        class Nobody:
            def approval(self, request: object) -> None:
                return None

        decisions = Decisions(emitted.append, lambda: 3, Nobody())  # type: ignore[arg-type]
        waiting = decisions.request_approval("billing", "issue_refund", {"amount": 1})
        decisions.close("stopped")
        assert waiting.cancelled()
        return emitted

    emitted = asyncio.run(go())
    (cancel,) = [e for e in emitted if isinstance(e, ApprovalDecisionEvent)]
    assert was_cancelled(cancel) and cancel.turn == 3
    actor, action, detail = audit_record(cancel) or ("", "", {})
    assert (actor, action, detail["decision"], detail["tool"]) == (
        "parley",
        "approval cancelled",
        "cancelled",
        "issue_refund",
    )


def test_a_message_typed_during_the_run_shows_until_it_joins() -> None:
    start = RunStartedEvent(source="parley", content="task", team="t", model="m", pattern="p", roles=["a"])
    first = HumanQueuedEvent(source="user", content="first")
    second = HumanQueuedEvent(source="user", content="second")
    joined = HumanMessageEvent.model_validate({"source": "user", "content": "first", "mode": "say"})
    bubbles = queued_bubbles("tid", [start, first, second, joined])
    assert [(b["type"], b["output"]) for b in bubbles] == [("user_message", "second")]
    assert queued_bubbles("tid", [start, first, second]) != queued_bubbles("tid", [start, first])


def test_the_web_and_the_terminal_say_how_a_run_ended_in_the_same_words() -> None:
    cases = {
        "stop_text": ("editor said APPROVE", "Finished: editor said APPROVE"),
        "max_turns": ("reached 8 turns", "Turn limit reached: reached 8 turns"),
        "loop": (
            "loop: writer said the same thing 3 times in a row",
            "Stopped going round in circles: writer",
        ),
        "max_tokens": ("token budget of 300 reached (412 used)", "Token budget reached: token budget of 300"),
        "timeout": ("wall-clock limit of 5 s reached", "Time limit reached: wall-clock limit of 5 s reached"),
        "error": ("RuntimeError: boom", "Stopped by an error: RuntimeError: boom"),
        "completed": ("the team finished", "Completed"),
        "handoff": ("", "Handed back to you"),
    }
    for reason, (detail, words) in cases.items():
        result = _result(reason, detail)
        terminal = summary(result)
        web = status_line(result, 3).replace("**", "")
        assert terminal.startswith(words) and f"Run ended · {words}" in web, (reason, terminal, web)
        assert reason not in terminal + web or reason in words.lower(), (reason, terminal, web)
    stopped = _result("stopped", "stopped by the user")
    assert summary(stopped, at_turn=3).startswith("Stopped by you at turn 3 · 3 turns")
    assert status_line(stopped, 3).startswith("**Run ended** · **Stopped by you** at turn 3 · 3 turns")
