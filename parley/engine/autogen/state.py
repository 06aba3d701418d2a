"""Team state for AutoGen teams: a small, versioned checkpoint per message, and the team rebuilt from what was said.

The only module that knows AutoGen's state layout. A checkpoint (`{"v": 2, ...}`) holds what the event log does not:
who just spoke and whom they handed over to, the roles' context summaries, and the state of a pattern's own steps
(a consensus tally). It is taken in constant time: nothing in it grows with the conversation. A team is rebuilt by
filling the state of a freshly built team (its own `save_state()`, small while it is empty) with everything said so
far: every role's model context, the manager's thread, and the manager's place in its rotation or graph.

Stored checkpoints from before versioning (raw `save_state()` data) are read through `upgrade`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import BaseChatMessage, HandoffMessage, TextMessage, ToolCallSummaryMessage
from autogen_agentchat.teams import BaseGroupChat, GraphFlow
from autogen_core.models import AssistantMessage, UserMessage

from ..._window import plan
from ...state import Said
from .context import kind_of
from .internals import graph_of, participants_of

__all__ = ["VERSION", "Checkpoints", "rebuild_state", "said_of", "upgrade"]

VERSION = 2


def said_of(message: BaseChatMessage) -> Said:
    """A message of the team's stream as parley keeps it."""
    if isinstance(message, HandoffMessage):
        return Said(message.source, message.to_text(), "handoff", message.target)
    kind = "tool_summary" if isinstance(message, ToolCallSummaryMessage) else "text"
    return Said(message.source, message.to_text(), kind)


class Checkpoints:
    """What a rebuilt team starts from: everything said to the team so far, and the checkpoint after the last
    role message. A team is rebuilt whole (after a stop, an interrupt or an error, or in a new process); the
    checkpoint taken after each message is small and costs the same at message 400 as at message 4."""

    def __init__(self, scheduled: Sequence[str]) -> None:
        self.scheduled = list(scheduled)
        """The roles the manager schedules, in order."""
        self.state: Mapping[str, Any] | None = None
        """The last checkpoint (version 2)."""
        self.said: list[Said] = []
        """Everything the team was told or said, in order: a rebuilt team's memory."""

    def fed(self, messages: Sequence[BaseChatMessage]) -> None:
        """The run gave the team these messages (the human's, woken roles'): a rebuilt team must have them too."""
        self.said.extend(said_of(m) for m in messages)

    def resume(self, said: Sequence[Said], checkpoint: Mapping[str, Any] | None) -> None:
        """Start from a stored conversation: what was said, and its checkpoint (any version)."""
        self.said = list(said)
        self.state = upgrade(checkpoint) if checkpoint is not None else None

    async def load_into(self, team: BaseGroupChat) -> None:
        """A freshly built team takes everything said so far (nothing when the conversation is new)."""
        if self.said or self.state is not None:
            await team.load_state(await rebuild_state(team, self.said, self.state))

    async def after_message(self, team: BaseGroupChat, message: BaseChatMessage) -> dict[str, Any]:
        """Called as soon as the team's stream yields a role's message. Returns the checkpoint to store."""
        self.said.append(said_of(message))
        state = await checkpoint_of(team, message)
        self.state = state
        return state


async def checkpoint_of(team: BaseGroupChat, message: BaseChatMessage) -> dict[str, Any]:
    """The small checkpoint after `message`: constant in the conversation's length."""
    summaries: dict[str, str] = {}
    steps: dict[str, Any] = {}
    for agent in participants_of(team):
        if isinstance(agent, AssistantAgent):
            summary = getattr(agent.model_context, "summary", "")
            if summary:
                summaries[agent.name] = str(summary)
        else:  # a pattern's own step (a consensus tally): its state is a few fields
            steps[agent.name] = dict(await agent.save_state())
    return {
        "v": VERSION,
        "speaker": message.source,
        "handoff": message.target if isinstance(message, HandoffMessage) else None,
        "summaries": summaries,
        "steps": steps,
    }


def upgrade(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """Any stored checkpoint as version 2. A version-1 checkpoint is AutoGen's raw `save_state()`: its context
    summaries, its steps' state and a swarm's current speaker are kept; the rest is rebuilt from the event log."""
    if checkpoint.get("v") == VERSION:
        return dict(checkpoint)
    summaries: dict[str, str] = {}
    steps: dict[str, Any] = {}
    speaker = handoff = None
    agents = checkpoint.get("agent_states", {})
    for name, state in agents.items() if isinstance(agents, Mapping) else ():
        if not isinstance(state, Mapping):
            continue
        if "message_thread" in state:  # the manager
            thread = state["message_thread"]
            speaker = thread[-1].get("source") if thread else None
            handoff = state.get("current_speaker") or None
            continue
        inner = state.get("agent_state", {})
        context = inner.get("llm_context") if isinstance(inner, Mapping) else None
        if isinstance(context, Mapping):
            if context.get("summary"):
                summaries[name] = str(context["summary"])
        elif isinstance(inner, Mapping):
            steps[name] = dict(inner)
    return {"v": VERSION, "speaker": speaker, "handoff": handoff, "summaries": summaries, "steps": steps}


# -- rebuilding ------------------------------------------------------------------------------------------------


async def rebuild_state(
    team: BaseGroupChat, said: Sequence[Said], checkpoint: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The state to load into the freshly built `team` so that it holds everything `said`, as if it had been
    there all along."""
    skeleton = await team.save_state()
    checkpoint = upgrade(checkpoint) if checkpoint is not None else {}
    agents: dict[str, Any] = dict(skeleton["agent_states"])
    manager = next(name for name, s in agents.items() if isinstance(s, Mapping) and "message_thread" in s)
    names = [n for n in agents if n != manager]
    for name in names:
        agents[name] = _container(agents[name], name, said, checkpoint, _window_of(team, name))
    agents[manager] = _manager(team, dict(agents[manager]), names, said)
    return {**skeleton, "agent_states": agents}


def _container(
    state: Mapping[str, Any],
    name: str,
    said: Sequence[Said],
    checkpoint: Mapping[str, Any],
    window: int | None,
) -> dict[str, Any]:
    """A participant's state: an assistant's model context holds everything said (its own turns as its
    answers) and its summary; a pattern's step takes its state from the checkpoint."""
    inner = dict(state.get("agent_state", {}))
    context = inner.get("llm_context")
    if isinstance(context, Mapping):
        messages = [
            AssistantMessage(content=s.content, source=name)
            if s.source == name
            else UserMessage(content=s.content, source=s.source)
            for s in said
        ]
        context = {**context, "messages": [m.model_dump() for m in messages]}
        summary = checkpoint.get("summaries", {}).get(name)
        if summary:
            # The summary covers the turns out of the role's window: they are not summarised again.
            view = plan([kind_of(m) for m in messages], window) if window is not None else None
            context["summary"] = summary
            context["summarised"] = [i for turn in view.dropped for i in turn] if view is not None else []
        inner["llm_context"] = context
    elif name in checkpoint.get("steps", {}):
        inner = dict(checkpoint["steps"][name])
    return {**state, "agent_state": inner, "message_buffer": []}


def _message(s: Said, names: Sequence[str]) -> BaseChatMessage:
    """A message of the manager's thread. A handoff to someone outside the team (the human) is plain text: the
    human's answer comes as a new message, and a swarm refuses a thread whose last handoff leaves the team."""
    if s.kind == "handoff" and s.target is not None and s.target in names:
        return HandoffMessage(source=s.source, target=s.target, content=s.content)
    return TextMessage(source=s.source, content=s.content)


def _manager(
    team: BaseGroupChat, state: dict[str, Any], names: Sequence[str], said: Sequence[Said]
) -> dict[str, Any]:
    """The manager's thread, and its place: a round robin's next speaker, a selector's previous one, a swarm's
    current one, a graph's nodes still to run."""
    messages = [_message(s, names) for s in said]
    state["message_thread"] = [m.dump() for m in messages]
    last = next((s for s in reversed(said) if s.source in names), None)
    if "next_speaker_index" in state and last is not None:
        state["next_speaker_index"] = (names.index(last.source) + 1) % len(names)
    if "previous_speaker" in state and last is not None:
        state["previous_speaker"] = last.source
    if "current_speaker" in state and last is not None:
        state["current_speaker"] = (
            last.target if last.kind == "handoff" and last.target in names else last.source
        )
    if "ready" in state and isinstance(team, GraphFlow):
        state.update(_graph_progress(team, names, messages))
    return state


def _graph_progress(
    team: GraphFlow, names: Sequence[str], messages: Sequence[BaseChatMessage]
) -> dict[str, Any]:
    """Where a graph stands after `messages`, walked the way AutoGen's graph manager walks them: each finished node
    readies its successors; when every node at work has answered and none is ready, the graph has finished and
    starts over. A step the team stopped in the middle of (some of its nodes had answered, others were still at
    work: a stop, the budget or the clock cut them short) starts over from the entry, with everything said in view;
    a step whose nodes had all answered goes on with the nodes it readied. A graph with steps of its own (a
    consensus) starts from its entry, as after a finished run."""
    walk = _GraphWalk(graph_of(team))
    if any(n not in names or not _is_assistant(team, n) for n in walk.graph.nodes):
        return _GraphWalk(walk.graph).state()
    for message in messages:
        walk.step(message)
    return walk.state()


class _GraphWalk:
    """AutoGen's graph manager's bookkeeping (remaining parents, nodes enqueued once, the ready queue), replayed."""

    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.origin: dict[str, dict[str, int]] = graph.get_remaining_map()
        self.start = [n for n in graph.nodes if n in graph.get_start_nodes()]
        self.restart()

    def restart(self) -> None:
        self.remaining = {t: Counter(g) for t, g in self.origin.items()}
        self.enqueued = {t: dict.fromkeys(g, False) for t, g in self.origin.items()}
        self.ready: list[str] = list(self.start)
        self.at_work: list[str] = []
        self.drain()

    def drain(self) -> None:
        """The manager hands the ready nodes their turn, and resets what readied them."""
        for node in self.ready:
            if node in self.origin:
                self.remaining[node] = Counter(self.origin[node])
                self.enqueued[node] = dict.fromkeys(self.origin[node], False)
        self.at_work += self.ready
        self.ready = []

    def step(self, message: BaseChatMessage) -> None:
        if not self.at_work and message.source in self.ready:  # the manager had handed the next step its turn
            self.drain()
        if message.source not in self.at_work:
            return
        self.at_work.remove(message.source)
        for edge in self.graph.nodes[message.source].edges:
            if edge.check_condition(message):
                self.activate(edge.target, edge.activation_group, edge.activation_condition == "all")
        if not self.at_work and not self.ready:  # finished: the next run starts from the entry
            self.restart()

    def activate(self, target: str, group: str, needs_all: bool) -> None:
        if needs_all:
            self.remaining[target][group] -= 1
            if self.remaining[target][group] == 0:
                self.ready.append(target)
        elif not self.enqueued[target][group]:
            self.ready.append(target)
            self.enqueued[target][group] = True

    def state(self) -> dict[str, Any]:
        if self.at_work:  # cut short in the middle of a step (or finished, or never begun): from the entry
            self.restart()
        self.drain()
        return {
            "remaining": {t: dict(g) for t, g in self.remaining.items()},
            "enqueued_any": self.enqueued,
            "ready": list(self.at_work),
        }


# -- what the rebuild reads of a built team ----------------------------------------------------------------


def _window_of(team: BaseGroupChat, name: str) -> int | None:
    """The role's context window in turns (None: it sees everything)."""
    agent = next((a for a in participants_of(team) if a.name == name), None)
    window = getattr(agent.model_context, "window", None) if isinstance(agent, AssistantAgent) else None
    return window if isinstance(window, int) else None


def _is_assistant(team: BaseGroupChat, name: str) -> bool:
    return any(isinstance(a, AssistantAgent) for a in participants_of(team) if a.name == name)
