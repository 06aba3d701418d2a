"""The hostile-model tests (tests/security/test_hostile_model.py) again, with the hostile script served over
HTTP to the real OpenAI client: arguments that are not JSON, repeated call ids, odd tool names and huge
calls reach parley exactly as a hostile model would send them, through the SDK's own parsing."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "security"))

from test_hostile_model import (  # reused as they are, on another path
    registry,
    test_a_call_id_repeated_after_a_restart_is_renamed_too,
    test_a_handoff_called_with_arguments_that_are_not_an_object_is_an_error_not_a_crash,
    test_a_repeated_call_id_is_renamed_before_anything_keys_on_it,
    test_approving_the_harmless_card_never_runs_the_other_call,
    test_hostile_tool_calls_become_tool_errors_the_agent_sees,
)

from parley.engine.autogen.models.replay import replay_server

__all__ = [
    "registry",
    "test_a_call_id_repeated_after_a_restart_is_renamed_too",  # a resumed conversation's script goes on in step
    "test_a_handoff_called_with_arguments_that_are_not_an_object_is_an_error_not_a_crash",
    "test_a_repeated_call_id_is_renamed_before_anything_keys_on_it",
    "test_approving_the_harmless_card_never_runs_the_other_call",
    "test_hostile_tool_calls_become_tool_errors_the_agent_sees",
]


@pytest.fixture(autouse=True)
def _over_http(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("PARLEY_SCRIPTED_VIA", "openai")
    before = replay_server().served["tool_calls"]
    yield
    assert replay_server().served["tool_calls"] > before, "the hostile calls did not go over HTTP"
