"""parley's errors: one base class to catch, a kind per cause, and old `except` clauses still working."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _support import team_yaml

import parley.errors as errors
from parley import Conversation
from parley.errors import (
    ConfigError,
    ParleyError,
    RunError,
    RunStateError,
    ScriptExhaustedError,
    StoreError,
    UnknownRequestError,
    UsageError,
)

Write = Callable[[str, str], Path]


def _script(write: Write, *replies: str) -> str:
    body = "".join(f"    - {r!r}\n" for r in replies)
    return "scripted:" + str(write("s.yaml", "roles:\n  alpha:\n" + body))


def test_every_error_parley_raises_is_a_parley_error() -> None:
    for name in errors.__all__:
        kind = getattr(errors, name)
        if isinstance(kind, type) and issubclass(kind, BaseException):
            assert issubclass(kind, ParleyError), name
    from parley.models import BudgetExceeded

    assert issubclass(BudgetExceeded, ParleyError)


def test_the_four_kinds_are_distinct() -> None:
    kinds = (ConfigError, UsageError, RunError, StoreError)
    for a in kinds:
        for b in kinds:
            assert issubclass(a, b) == (a is b), (a, b)


def test_answering_a_request_that_is_not_open_is_a_usage_error_and_still_a_key_error() -> None:
    with pytest.raises(KeyError) as old_style:
        raise UnknownRequestError("question", "q-9", ["q-1", "q-2"])
    err = old_style.value
    assert isinstance(err, UsageError)
    assert (err.kind, err.request_id, err.open_ids) == ("question", "q-9", ["q-1", "q-2"])
    # Readable as it is, not quoted like a KeyError's missing key.
    assert str(err) == "no open question 'q-9' (open: 'q-1', 'q-2')"
    assert (
        str(UnknownRequestError("approval request", "r-1")) == "no open approval request 'r-1' (open: none)"
    )


def test_a_call_that_does_not_fit_the_run_state_is_a_usage_error_and_still_a_runtime_error() -> None:
    with pytest.raises(RuntimeError) as old_style:
        raise RunStateError("a run is already in progress on this conversation")
    assert isinstance(old_style.value, UsageError)
    assert str(old_style.value) == "a run is already in progress on this conversation"


def test_a_run_error_says_where_and_keeps_the_original_exception() -> None:
    cause = TimeoutError("the model did not answer")
    err = RunError("analyst's turn failed", role="analyst", turn=3, original=cause)
    assert (err.role, err.turn, err.original) == ("analyst", 3, cause)
    assert err.__cause__ is cause
    assert err.error_type == "TimeoutError"
    stored = RunError(
        "replayed from the log", error_type="TimeoutError"
    )  # only the name survives in an event
    assert (stored.original, stored.error_type) == (None, "TimeoutError")


def test_the_store_raises_the_one_store_error() -> None:
    from parley.store import StoreError as FromStore

    assert FromStore is StoreError


async def test_misusing_a_conversation_raises_usage_errors_that_old_except_clauses_still_catch(
    write: Write,
) -> None:
    conv = Conversation(
        write("team.yaml", team_yaml(roles=("alpha",), max_turns=1)), model=_script(write, "done")
    )
    run = conv.start("Summarise the notes")
    with pytest.raises(RuntimeError) as second:
        conv.start("Something else")
    assert isinstance(second.value, RunStateError)
    assert "a run is already in progress" in str(second.value)
    with pytest.raises(KeyError) as unknown:
        run.answer("q-404", "yes")
    assert isinstance(unknown.value, UnknownRequestError)
    assert str(unknown.value) == "no open question 'q-404' (open: none)"
    assert (await run.wait()).stop_reason != "error"


async def test_a_failed_run_says_which_role_failed_at_which_turn_and_why(write: Write) -> None:
    team = write("team.yaml", team_yaml(roles=("alpha",), max_turns=3))
    run = Conversation(team, model=_script(write, "the one reply it has")).start("Summarise the notes")
    result = await run.wait()
    assert result.stop_reason == "error"
    assert isinstance(run.error, RunError)
    assert (run.error.role, run.error.turn) == ("alpha", 2)
    assert isinstance(run.error.original, ScriptExhaustedError)
    assert run.error.__cause__ is run.error.original
    assert "ran past the end of its script" in str(run.error)
