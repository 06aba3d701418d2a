"""Consensus: voters answer in parallel and on their own, a strict majority of normalised answers
decides, ties go to a debate and then to the tie rule (judge, manager, or a human)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from _support import collect, team_yaml

from parley import Conversation
from parley.engine.autogen.consensus import NO_VOTE, normalise
from parley.errors import TeamFileError
from parley.events import ChunkEvent, EscalationEvent, Event, MessageEvent, RunResult, VoteEvent
from parley.spec import load_team_file

Write = Callable[[str, str], Path]
VOTERS = ("analyst", "risk", "ops")


def _team(write: Write, consensus: str, roles: tuple[str, ...] = VOTERS) -> Path:
    return write("team.yaml", team_yaml("consensus", roles=roles, max_turns=12, extra=consensus))


def _votes(events: list[Event]) -> list[VoteEvent]:
    return [e for e in events if isinstance(e, VoteEvent)]


def test_answers_are_normalised_before_counting() -> None:
    options = ["approve", "reject"]
    assert normalise("I weighed it.\nVOTE: **Approve**", options) == "approve"
    assert normalise("Reject, the margins are thin.", options) == "reject"
    assert normalise("approve or reject? hard to say", options) == NO_VOTE
    assert normalise("Reasons...\nAnswer: approve, not reject", options) == NO_VOTE
    assert normalise("Final answer: Paris.", []) == normalise("ANSWER: paris", []) == "paris"


async def test_voters_answer_in_parallel_and_a_majority_decides(write: Write) -> None:
    team = _team(write, "consensus: {options: [approve, reject]}\n")
    script = write(
        "s.yaml",
        """
        roles:
          analyst: ["Margins hold up.\\nVOTE: approve"]
          risk: ["Too much exposure to one client.\\nVOTE: Reject"]
          ops: ["We can deliver it. vote: APPROVE"]
        delay_s: 0.4
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Should we take the Acme contract?"))
    # Independent: no voter saw another's answer before giving its own.
    for call in conv.pool.scripts[0].calls:
        prompt = " ".join(str(m.content) for m in call.messages)
        assert "Margins hold up" not in prompt and "exposure" not in prompt
    # Parallel: each voter was still streaming when another started.
    firsts = {e.source: i for i, e in reversed(list(enumerate(events))) if isinstance(e, ChunkEvent)}
    lasts = {e.source: i for i, e in enumerate(events) if isinstance(e, ChunkEvent)}
    assert all(firsts[a] < lasts[b] for a in VOTERS for b in VOTERS if a != b)
    [vote] = _votes(events)
    assert vote.votes == {"analyst": "approve", "risk": "reject", "ops": "approve"}
    assert (
        vote.tally == {"approve": 2, "reject": 1}
        and vote.outcome == "majority"
        and vote.decision == "approve"
    )
    said = [(e.source, e.content) for e in events if isinstance(e, MessageEvent)]
    assert [s for s, _ in said][-1] == "verdict" and said[-1][1].startswith(
        "Decision: approve (by majority vote"
    )
    assert isinstance(events[-1], RunResult) and events[-1].stop_reason == "completed"
    assert events[-1].turns == 4  # every parallel answer counts, and the verdict: the turns shown
    assert events[-1].content.startswith("Decision: approve")


async def test_a_split_vote_debates_and_the_voters_see_each_other(write: Write) -> None:
    team = _team(write, "consensus: {options: [approve, reject, defer], debate_rounds: 1}\n")
    script = write(
        "s.yaml",
        """
        roles:
          analyst: ["VOTE: approve", "Risk convinced me. VOTE: reject"]
          risk: ["VOTE: reject", "VOTE: reject"]
          ops: ["VOTE: defer", "VOTE: defer"]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Take the contract?"))
    votes = _votes(events)
    assert [(v.round, v.outcome, v.decision) for v in votes] == [
        (1, "debate", None),
        (2, "majority", "reject"),
    ]
    second_round = [c for c in conv.pool.scripts[0].calls if c.who == "analyst"][1]
    prompt = " ".join(str(m.content) for m in second_round.messages)
    assert "VOTE: reject" in prompt and "VOTE: defer" in prompt  # the others' first answers


async def test_a_tie_goes_to_the_judge(write: Write) -> None:
    team = _team(
        write,
        "consensus: {options: [approve, reject], debate_rounds: 0, tie: judge, judge: chair}\n",
        roles=("analyst", "risk", "chair"),
    )
    script = write(
        "s.yaml",
        """
        roles:
          analyst: ["VOTE: approve"]
          risk: ["VOTE: reject"]
          chair: ["The risk case is stronger. VOTE: reject"]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Take the contract?"))
    assert [(v.outcome, v.decision, v.source) for v in _votes(events)] == [
        ("tie", None, "tally"),
        ("judge", "reject", "chair"),
    ]
    speakers = [e.source for e in events if isinstance(e, MessageEvent)]
    assert speakers[-2:] == ["chair", "verdict"] and "chair's ruling" in events[-1].content


async def test_a_tie_goes_to_the_manager_model(write: Write) -> None:
    team = _team(
        write,
        "consensus: {options: [approve, reject], debate_rounds: 0, tie: manager}\n",
        roles=("analyst", "risk"),
    )
    script = write(
        "s.yaml",
        """
        roles:
          analyst: ["VOTE: approve"]
          risk: ["VOTE: reject"]
        selector: ['{"decision": "approve"}']
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Take the contract?"))
    assert [(v.outcome, v.decision) for v in _votes(events)] == [("tie", None), ("manager", "approve")]
    assert events[-1].content.startswith("Decision: approve (by the manager's ruling")


@pytest.mark.parametrize(
    ("how", "decision"), [({"choose": 2}, "reject"), ({"text": "defer it to Q1"}, "defer it to Q1")]
)
async def test_a_tie_escalates_to_the_human(write: Write, how: dict[str, object], decision: str) -> None:
    team = _team(
        write, "consensus: {options: [approve, reject], debate_rounds: 0}\n", roles=("analyst", "risk")
    )
    script = write("s.yaml", "roles:\n  analyst: ['VOTE: approve']\n  risk: ['VOTE: reject']\n")
    conv = Conversation(team, model=f"scripted:{script}")
    run = conv.start("Take the contract?")

    def on_event(ev: Event) -> None:
        if isinstance(ev, EscalationEvent):
            assert ev.kind == "tie" and [(p.who, p.text) for p in ev.positions] == [
                ("analyst", "approve"),
                ("risk", "reject"),
            ]
            run.resolve(ev.escalation_id, **how, actor="dana")  # type: ignore[arg-type]

    events = await collect(run, on_event)
    assert [(v.outcome, v.decision) for v in _votes(events)] == [("tie", None), ("human", decision)]
    assert events[-1].content.startswith(f"Decision: {decision} (by a human's ruling")


def test_consensus_settings_are_checked(write: Write) -> None:
    text = (
        team_yaml("consensus", roles=("tally", "risk")) + "consensus: {tie: judge, voters: [risk, ghost]}\n"
    )
    with pytest.raises(TeamFileError) as err:
        load_team_file(write("bad.yaml", text))
    message = str(err.value)
    assert "step of the consensus pattern" in message and "unknown role 'ghost'" in message
    assert "tie: judge needs `judge: ROLE`" in message
