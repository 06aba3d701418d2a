"""The consensus pattern as an AutoGen GraphFlow.

    ballot ──▶ voter₁ … voterₙ (in parallel, each on its own) ──▶ tally ──▶ verdict
                    ▲                                               │ │
                    └────────── debate round (no majority) ◀────────┘ └──▶ judge ──▶ verdict

`ballot`, `tally` and `verdict` are parley's own steps, not models: the ballot frames the vote, the
tally normalises and counts the answers (a strict majority wins), and the verdict states the decision.
Without a majority the voters debate (each now sees the others' answers) for up to `debate_rounds`
rounds; a vote still tied goes to the tie rule: the judge role, the manager model, or a human.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from autogen_agentchat.agents import BaseChatAgent
from autogen_agentchat.base import Response
from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage, TextMessage
from autogen_agentchat.teams import DiGraphBuilder
from autogen_core import CancellationToken
from autogen_core.models import ChatCompletionClient, SystemMessage, UserMessage

from ...events import Position, VoteEvent
from ...spec import ConsensusSpec, TeamSpec
from .agent import AgentHost, ParleyNotice, escalate
from .choose import choose

NO_VOTE = "(no clear vote)"
# Linear on any text: after the label, the rest of the line (the next line when the label ends its own), taken
# greedily and stripped in Python. (A lazy `(.+?)\s*$` retried the trailing `\s*` at every step: quadratic on a vote line
# padded with spaces, which froze the event loop for seconds on one hostile answer.)
_VOTE_LINE = re.compile(r"\b(?:final\s+)?(?:vote|answer|decision)\b[*_]*\s*[:=](\s*[^\n]+)", re.IGNORECASE)
SCAN_LIMIT = 500_000
"""Characters of an answer the vote is read from (its end, where the VOTE line goes): a few milliseconds of
matching on the event loop for one answer, however long a model makes it."""


def normalise(text: str, options: Sequence[str]) -> str:
    """A voter's answer as a comparable vote: one of `options`, or the answer line lower-cased and tidied.

    The last `VOTE:` (or `ANSWER:`/`DECISION:`) line counts when there is one; otherwise the whole answer.
    """
    text = text[-SCAN_LIMIT:]
    lines = [line.strip() for line in _VOTE_LINE.findall(text)]
    said = lines[-1] if lines else text
    if options:
        for scope in (said, text) if lines else (text,):
            named = {o for o in options if re.search(rf"(?<!\w){re.escape(o)}(?!\w)", scope, re.IGNORECASE)}
            if len(named) == 1:
                return named.pop()
        return NO_VOTE
    said = said.strip().splitlines()[0] if said.strip() else ""
    tidy = " ".join(re.sub(r"[*_`\"'.!?,;:]+", " ", said).lower().split())
    return tidy or NO_VOTE


class _Step(BaseChatAgent):
    """A step of parley's own in a graph: no model, just bookkeeping and a short message."""

    @property
    def produced_message_types(self) -> Sequence[type[BaseChatMessage]]:
        return (TextMessage,)

    async def on_messages(
        self, messages: Sequence[BaseChatMessage], cancellation_token: CancellationToken
    ) -> Response:
        response = None
        async for item in self.on_messages_stream(messages, cancellation_token):
            if isinstance(item, Response):
                response = item
        assert response is not None
        return response

    async def on_reset(self, cancellation_token: CancellationToken) -> None:
        return None


class Ballot(_Step):
    def __init__(self, spec: ConsensusSpec, voters: list[str]) -> None:
        super().__init__("ballot", "Opens the vote")
        self._text = (
            f"Vote: {', '.join(voters)} each answer on their own. "
            + (f"Choose one of: {', '.join(spec.options)}. " if spec.options else "")
            + "Give your reasons, then end with a line `VOTE: <your answer>`."
        )

    async def on_messages_stream(
        self,
        messages: Sequence[BaseChatMessage],
        cancellation_token: CancellationToken,
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        yield Response(chat_message=TextMessage(source=self.name, content=self._text))


class Tally(_Step):
    """Counts each round's votes and decides what happens next (`metadata["outcome"]` drives the graph)."""

    def __init__(
        self,
        spec: ConsensusSpec,
        voters: list[str],
        host: AgentHost,
        manager: ChatCompletionClient | None,
        json_schema: bool,
        ballots: Mapping[str, tuple[ChatCompletionClient, bool]] | None = None,
    ) -> None:
        super().__init__("tally", "Counts the votes")
        self.ballots = dict(ballots or {})
        """Per voter, a client (and whether it takes a JSON schema) to ask again when its vote is unreadable."""
        self.spec = spec
        self.voters = voters
        self.host = host
        self.manager = manager
        self.json_schema = json_schema
        self.round = 0
        self.extra_rounds = 0
        self.answers: dict[str, str] = {}
        self.votes: dict[str, str] = {}
        self.decision: str | None = None
        self.decided_by = ""

    async def on_messages_stream(
        self,
        messages: Sequence[BaseChatMessage],
        cancellation_token: CancellationToken,
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        for m in messages:
            if m.source in self.voters:
                self.answers[m.source] = m.to_model_text()
        self.round += 1
        self.votes = {v: normalise(self.answers.get(v, ""), self.spec.options) for v in self.voters}
        for voter, vote in self.votes.items():
            if vote == NO_VOTE and self.spec.options and voter in self.ballots:
                self.votes[voter] = await self._ask_again(voter)
        counted = Counter(v for v in self.votes.values() if v != NO_VOTE)
        tally = dict(counted.most_common())
        top = counted.most_common(1)
        if top and top[0][1] * 2 > len(self.voters):
            self.decision, self.decided_by = top[0][0], "majority"
            outcome = "majority"
        elif self.round <= self.spec.debate_rounds + self.extra_rounds:
            outcome = "debate"
        else:
            outcome = "tie"
        yield self._notice(outcome, tally)
        if outcome == "tie":
            async for item in self._break_tie(tally, cancellation_token):
                yield item
        step = self._next(outcome)
        yield Response(
            chat_message=TextMessage(
                source=self.name, content=self._say(step, tally), metadata={"outcome": step}
            )
        )

    async def _ask_again(self, voter: str) -> str:
        """A vote the tally cannot read: ask the voter's model which option its answer supports (a constrained
        choice, which even the embedded model makes reliably)."""
        client, json_schema = self.ballots[voter]
        options = list(self.spec.options)
        prompt = [
            SystemMessage(content="You state which option an answer supports."),
            UserMessage(
                content=f"Answer:\n{self.answers.get(voter, '')[-1500:]}\n\nWhich option does it "
                f"support? One of: {', '.join(options)}.",
                source="user",
            ),
        ]
        return await choose(client, prompt, options, field="vote", json_schema=json_schema) or NO_VOTE

    def _next(self, outcome: str) -> str:
        """Where the graph goes: another `debate` round, the `judge`, or the verdict (`decided`)."""
        if outcome == "debate" or (outcome == "tie" and self.decided_by == "human" and self.decision is None):
            return "debate"
        return "judge" if outcome == "tie" and self.decided_by == "judge" else "decided"

    def _notice(self, outcome: str, tally: dict[str, int], decided_by: str | None = None) -> ParleyNotice:
        what = {
            "majority": f"majority for {self.decision!r}",
            "debate": "no majority: the voters debate another round",
            "tie": "no majority after the debate: the tie rule decides",
        }.get(outcome, f"{decided_by} decided {self.decision!r}")
        counts = ", ".join(f"{k} {n}" for k, n in tally.items()) or "no clear votes"
        return ParleyNotice(
            source=self.name,
            event=VoteEvent(
                source=decided_by or self.name,
                round=self.round,
                votes=dict(self.votes),
                tally=tally,
                outcome=outcome,  # type: ignore[arg-type]
                decision=self.decision,
                content=f"Round {self.round}: {counts}; {what}",
            ),
        )

    def _positions(self, tally: dict[str, int]) -> list[Position]:
        answers = [a for a in tally if a != NO_VOTE] or sorted(set(self.votes.values()))
        out = []
        for answer in answers:
            holders = [v for v in self.voters if self.votes[v] == answer]
            reason = self.answers.get(holders[0], "") if holders else ""
            out.append(
                Position(who=", ".join(holders), text=answer if self.spec.options else reason or answer)
            )
        return out

    async def _break_tie(
        self,
        tally: dict[str, int],
        token: CancellationToken,
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage, None]:
        rule = self.spec.tie
        positions = self._positions(tally)
        if rule == "judge":
            self.decided_by = "judge"  # the judge speaks next; the verdict reads its answer
            return
        if rule == "manager" and self.manager is not None:
            choices = [p.text if self.spec.options else normalise(p.text, ()) for p in positions]
            pick = await choose(
                self.manager,
                self._manager_prompt(positions),
                choices,
                field="decision",
                json_schema=self.json_schema,
            )
            self.decision, self.decided_by = pick or choices[0], "manager"
            yield self._notice("manager", tally, "manager")
            return
        answered = None
        async for step in escalate(
            self.host,
            token,
            kind="tie",
            source=self.name,
            positions=positions,
            content=f"No majority after {self.round} round(s): "
            + "; ".join(f"{p.who}: {p.text[:80]}" for p in positions),
        ):
            if isinstance(step, ParleyNotice):
                yield step
            else:
                answered = step
        assert answered is not None
        self.decided_by = "human"
        if answered.decision == "continue":  # the team goes on: one more debate round
            self.extra_rounds += 1
            self.decision = None
            return
        self.decision = (
            answered.content if not self.spec.options else normalise(answered.content, self.spec.options)
        )
        if self.decision == NO_VOTE:
            self.decision = answered.content
        yield self._notice("human", tally, answered.actor)

    def _manager_prompt(self, positions: list[Position]) -> list[SystemMessage | UserMessage]:
        sides = "\n".join(f"- {p.text} (held by {p.who})" for p in positions)
        return [
            SystemMessage(
                content="You settle tied team votes. Pick the position best supported by the reasons."
            ),
            UserMessage(content=f"The team is split:\n{sides}\nWhich position wins?", source="user"),
        ]

    def _say(self, outcome: str, tally: dict[str, int]) -> str:
        counts = ", ".join(f"{k}: {n}" for k, n in tally.items()) or "no clear votes"
        if outcome == "debate":
            return (
                f"No majority yet ({counts}). Read the other answers above, then answer again: you may change "
                "your mind. End with a line `VOTE: <your answer>`."
            )
        if outcome == "judge":
            return (
                f"The vote is tied ({counts}). {self.spec.judge}: weigh the answers above and decide. "
                "End with a line `VOTE: <answer>`."
            )
        return f"Decided: {self.decision} ({counts}; by {self.decided_by})."

    async def save_state(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "extra_rounds": self.extra_rounds,
            "answers": self.answers,
            "decision": self.decision,
            "decided_by": self.decided_by,
        }

    async def load_state(self, state: Mapping[str, Any]) -> None:
        self.round = int(state.get("round", 0))
        self.extra_rounds = int(state.get("extra_rounds", 0))
        self.answers = dict(state.get("answers", {}))
        self.decision = state.get("decision")
        self.decided_by = str(state.get("decided_by", ""))


class Verdict(_Step):
    """States the decision: the team's final message."""

    def __init__(self, tally: Tally) -> None:
        super().__init__("verdict", "States the decision")
        self.tally = tally

    async def on_messages_stream(
        self,
        messages: Sequence[BaseChatMessage],
        cancellation_token: CancellationToken,
    ) -> AsyncGenerator[BaseAgentEvent | BaseChatMessage | Response, None]:
        tally = self.tally
        judge = tally.spec.judge
        if tally.decided_by == "judge" and judge is not None:
            said = next((m.to_model_text() for m in reversed(messages) if m.source == judge), "")
            tally.decision = normalise(said, tally.spec.options) if said else NO_VOTE
            yield tally._notice(
                "judge", dict(Counter(v for v in tally.votes.values() if v != NO_VOTE).most_common()), judge
            )
        votes = ", ".join(f"{who}: {v}" for who, v in tally.votes.items())
        by = {
            "majority": "majority vote",
            "judge": f"{judge}'s ruling",
            "manager": "the manager's ruling",
            "human": "a human's ruling",
        }.get(tally.decided_by, tally.decided_by)
        text = f"Decision: {tally.decision} (by {by} after {tally.round} round{'s' if tally.round != 1 else ''}; {votes})."
        yield Response(chat_message=TextMessage(source=self.name, content=text))


def consensus_graph(
    spec: TeamSpec,
    agents: Sequence[Any],
    host: AgentHost,
    manager: ChatCompletionClient | None,
    json_schema: bool,
    ballots: Mapping[str, tuple[ChatCompletionClient, bool]] | None = None,
) -> tuple[list[Any], Any]:
    """The participants and the DiGraph of a consensus team."""
    c = spec.consensus or ConsensusSpec()
    voters = spec.voters
    by_name = {a.name: a for a in agents}
    ballot = Ballot(c, voters)
    tally = Tally(c, voters, host, manager, json_schema, ballots)
    verdict = Verdict(tally)
    builder = DiGraphBuilder()
    for node in (ballot, *(by_name[v] for v in voters), tally, verdict):
        builder.add_node(node)
    for v in voters:
        builder.add_edge(ballot, by_name[v], activation_group="ballot")
        builder.add_edge(by_name[v], tally, activation_group="votes")
        builder.add_edge(tally, by_name[v], condition=_outcome("debate"), activation_group="debate")
    builder.add_edge(
        tally, verdict, condition=_outcome("decided"), activation_group="tally", activation_condition="any"
    )
    if c.judge is not None:
        judge = by_name[c.judge]
        builder.add_node(judge)
        builder.add_edge(tally, judge, condition=_outcome("judge"))
        builder.add_edge(judge, verdict, activation_group="judge", activation_condition="any")
    builder.set_entry_point(ballot)
    participants = [ballot, *(by_name[v] for v in voters), tally, verdict]
    if c.judge is not None:
        participants.append(by_name[c.judge])
    return participants, builder.build()


def _outcome(value: str) -> Any:
    return lambda message: message.metadata.get("outcome") == value
