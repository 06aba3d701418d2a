"""bench/metering.py's smoke run: every model call parley makes reaches the meter, with the endpoint's tokens.

The endpoint's count is the truth: a call it received that the meter did not record is a bug, and so
are tokens that differ while the endpoint reports usage. A call cut short never gets the backend's
usage, so the meter estimates it, within the stated error.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

KINDS = [
    "agent",
    "agent, tools offered",
    "agent after tool",
    "selector",
    "validation retry",
    "summariser",
    "consensus ballot",
    "consensus judge",
    "consensus tie (manager)",
    "eval judge",
    "eval failure judge",
    "agent (interrupted)",
]
SCHEMA_KINDS = {"selector", "consensus ballot", "consensus tie (manager)", "eval judge", "eval failure judge"}
"""Calls constrained with a JSON schema (response_format)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from bench import metering

    folder = tmp_path_factory.mktemp("bench-results")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PARLEY_BENCH_RESULTS", str(folder))
        mp.setenv("PARLEY_DATA_DIR", str(tmp_path_factory.mktemp("parley-data")))
        mp.delenv("PARLEY_MODEL", raising=False)
        assert metering.main(["--smoke"]) == 0
    yield json.loads((folder / "metering-smoke.json").read_text())


def _phase(data: dict[str, Any], usage: bool) -> dict[str, Any]:
    return next(p for p in data["phases"] if p["usage_reported"] is usage)


def _kind(data: dict[str, Any], usage: bool, kind: str) -> dict[str, Any]:
    if kind == "summariser" and not data["summaries_supported"]:
        pytest.skip("parley has no `context: {summary: true}` yet")
    kinds = _phase(data, usage)["kinds"]
    assert kind in kinds, f"the benchmark made no {kind!r} call: {sorted(kinds)}"
    return kinds[kind]  # type: ignore[no-any-return]


@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no-usage"])
def test_every_call_the_endpoint_received_was_recognised_and_paired(
    data: dict[str, Any], usage: bool
) -> None:
    kinds = _phase(data, usage)["kinds"]
    assert "unclassified" not in kinds
    assert "metered, never received" not in kinds


@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no-usage"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_call_is_metered(data: dict[str, Any], kind: str, usage: bool) -> None:
    k = _kind(data, usage, kind)
    assert k["calls_received"] >= 1
    assert k["calls_metered"] == k["calls_received"]


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "agent (interrupted)"])
def test_metered_tokens_equal_the_endpoints_usage(data: dict[str, Any], kind: str) -> None:
    k = _kind(data, True, kind)
    assert (k["prompt_metered"], k["completion_metered"]) == (k["prompt_received"], k["completion_received"])


@pytest.mark.parametrize("usage", [True, False], ids=["usage", "no-usage"])
def test_a_call_cut_short_is_estimated_within_the_stated_error(data: dict[str, Any], usage: bool) -> None:
    k = _kind(data, usage, "agent (interrupted)")
    assert k["prompt_metered"] > 0
    assert abs(k["coverage_tokens"] - 1) <= data["estimate_tolerance"]


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "agent (interrupted)"])
def test_estimates_stay_within_the_stated_error_without_usage(data: dict[str, Any], kind: str) -> None:
    k = _kind(data, False, kind)
    assert abs(k["coverage_tokens"] - 1) <= data["estimate_tolerance"]


@pytest.mark.parametrize(
    "scenario",
    [
        "selector team (validation, summaries, a tool)",
        "consensus, judge breaks the tie",
        "consensus, manager breaks the tie",
        "interrupted turn",
        "eval with a judge model",
    ],
)
def test_the_user_is_shown_every_metered_token(data: dict[str, Any], scenario: str) -> None:
    s = _phase(data, True)["scenarios"][scenario]
    assert not s["notes"]
    assert s["tokens_shown"] == s["tokens_metered"]
