"""Every use of AutoGen's private internals, in one place, each with why AutoGen offers no public way.

tests/test_autogen_internals.py fails loudly (naming what changed) when an AutoGen release moves one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Mapping
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.teams import BaseGroupChat, GraphFlow
from autogen_core import EVENT_LOGGER_NAME, SingleThreadedAgentRuntime
from opentelemetry import trace

from .tools import checked_call

__all__ = [
    "CheckedToolCalls",
    "QuietRuntime",
    "RestartableGraphFlow",
    "graph_of",
    "manager_name_of",
    "participants_of",
    "quiet",
]

TOOL_CALL_PARAMETERS = (
    "tool_call",
    "workbench",
    "handoff_tools",
    "agent_name",
    "cancellation_token",
    "stream",
)
"""The keyword arguments of AssistantAgent._execute_tool_call that CheckedToolCalls relies on."""


def participants_of(team: BaseGroupChat) -> list[Any]:
    """The team's participants, in order. (A team's state is keyed by them; AutoGen keeps the list private.)"""
    return list(team._participants)  # pyright: ignore[reportPrivateUsage]


def graph_of(team: GraphFlow) -> Any:
    """A graph team's DiGraph. (Needed to rebuild where a graph stood; AutoGen keeps it private.)"""
    return team._graph  # pyright: ignore[reportPrivateUsage]


def manager_name_of(team: BaseGroupChat) -> str:
    """The name the team's manager's state is saved under. (Private in AutoGen.)"""
    return str(team._group_chat_manager_name)  # pyright: ignore[reportPrivateUsage]


RUNTIME_HOOKS = {
    "_try_serialize": ("self", "message"),
    "_create_otel_attributes": (
        "self",
        "sender_agent_id",
        "recipient_agent_id",
        "message_context",
        "message",
    ),
}
"""The private methods of AutoGen's runtime QuietRuntime overrides, and the parameters it relies on."""
TRACER_ATTRIBUTE = "_tracer_helper"
"""The runtime's attribute it opens every span with (`.trace_block`), replaced by `quiet`."""
_EVENTS = logging.getLogger(EVENT_LOGGER_NAME)


def runtime_of(team: BaseGroupChat) -> Any:
    """The runtime a team made for itself. (AutoGen keeps it private; a team given none makes its own.)"""
    return team._runtime  # pyright: ignore[reportPrivateUsage]


def spans_recorded() -> bool:
    """Whether the spans AutoGen's runtime opens go anywhere: only once the process has an OpenTelemetry tracer
    provider of its own (parley's own traces use a provider of parley's, not the process's), and AutoGen's
    `AUTOGEN_DISABLE_RUNTIME_TRACING` does not turn them off."""
    if os.environ.get("AUTOGEN_DISABLE_RUNTIME_TRACING") == "true":
        return False
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider | trace.NoOpTracerProvider)


class _Untraced:
    """What AutoGen's runtime opens its spans with (its TraceHelper's one method), opening none: each of its
    spans, which record nothing here, still cost a context attached and detached, links and a name (about 14 per
    message)."""

    # A null context holds no state: one serves every block, nested or not.
    _none = contextlib.nullcontext(trace.INVALID_SPAN)

    def trace_block(self, *args: Any, **kwargs: Any) -> contextlib.AbstractContextManager[trace.Span]:
        return self._none


class QuietRuntime(SingleThreadedAgentRuntime):
    """AutoGen's runtime, minus the work nobody reads. For every message it sends, publishes and delivers, AutoGen's
    runtime writes the message as JSON into an event for its `autogen_core.events` logger and into its span's
    attributes (with two agent look-ups), and opens spans, before anything asks whether that logger is on or the
    spans record. A team is given this one only while its spans go nowhere (see `quiet`): it opens none, and its
    event log gets the message only while that logger takes INFO. Together about 15 % of the engine's CPU per
    streamed message (paired in-process runs)."""

    def _try_serialize(self, message: Any) -> str:
        if _EVENTS.isEnabledFor(logging.INFO):
            return super()._try_serialize(message)  # pyright: ignore[reportPrivateUsage]
        return ""

    async def _create_otel_attributes(self, *args: Any, **kwargs: Any) -> Mapping[str, str]:
        return {}


def quiet(team: BaseGroupChat) -> BaseGroupChat:
    """`team`, with its own runtime made a QuietRuntime while nothing records AutoGen's spans (the team still starts
    and stops it, as AutoGen's own). A tracer provider set for the process later reaches only teams built after it."""
    runtime = runtime_of(team)
    if type(runtime) is SingleThreadedAgentRuntime and not spans_recorded():
        runtime.__class__ = QuietRuntime  # adds no state: its two methods differ, and the helper below
        runtime._tracer_helper = _Untraced()  # pyright: ignore[reportPrivateUsage, reportAttributeAccessIssue]
    return team


class CheckedToolCalls(AssistantAgent):
    """An AssistantAgent whose tool calls are checked before AutoGen runs them, and whose cancelled tool calls do
    not hold the agent. AutoGen's only hook for one tool call is the private `_execute_tool_call`; a workbench
    wrapper would not see hand-offs, and not the stream AutoGen waits on."""

    @staticmethod
    async def _execute_tool_call(**kwargs: Any) -> Any:
        # A model's call is checked before AutoGen runs it: a tool it was not given, or arguments that are not
        # one JSON object, become the call's error result (see parley._calls.call_problem).
        try:
            return await checked_call(AssistantAgent._execute_tool_call, **kwargs)  # pyright: ignore[reportPrivateUsage]
        except asyncio.CancelledError:
            # AutoGen reads an answer's tool calls' streamed events until a None says they are done; a cancellation
            # (stop, time-out, token budget) raised past that point left the agent waiting forever, holding its whole
            # team. Say done, so the cancellation reaches the agent too.
            kwargs["stream"].put_nowait(None)
            raise


class RestartableGraphFlow(GraphFlow):
    """A GraphFlow that a checkpoint taken in the middle of a step can restore.

    A run that stops while some roles of a step are still working (its budget or clock ran out, the human stopped
    or interrupted it) leaves as its last checkpoint a graph with no node left to run: the others had been started,
    and AutoGen does not save who was still working. Restored as it is, the graph would end the next run at once,
    without a turn. Restored by this class, it starts over from its entry, with everything said so far in view, as
    after a run that finished."""

    async def load_state(self, state: Mapping[str, Any]) -> None:
        agents = state.get("agent_states")
        name = manager_name_of(self)
        manager = agents.get(name) if isinstance(agents, Mapping) else None
        if isinstance(manager, Mapping) and "ready" in manager and not manager["ready"]:
            graph = graph_of(self)
            start = graph.get_start_nodes()
            manager = {
                **manager,
                "remaining": {target: dict(groups) for target, groups in graph.get_remaining_map().items()},
                "enqueued_any": {
                    node: dict.fromkeys(groups, False) for node, groups in manager["enqueued_any"].items()
                },
                "ready": [n for n in graph.nodes if n in start],
            }
            state = {**state, "agent_states": {**agents, name: manager}}  # type: ignore[dict-item]
        await super().load_state(state)
