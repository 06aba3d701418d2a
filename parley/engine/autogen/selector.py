"""Speaker selection for the selector pattern.

AutoGen's own selector sends the whole history to the model on every turn and can fall
back to the previous speaker. parley's selector sends a compact view (roles, the task, a
short recent window), constrains models that support it to answer with a JSON schema whose
only values are role names, and, when an answer names nobody, picks by rule and says so.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from autogen_agentchat.messages import BaseAgentEvent, BaseChatMessage
from autogen_core.models import ChatCompletionClient, SystemMessage, UserMessage

from ..._text import one_line
from ...spec import TeamSpec
from .choose import choose
from .turns import tool_step

TASK_CLIP = 300
GIST = 45
"""Characters kept from each end of the last message."""


class Selector:
    """Picks the next speaker; pass `select` (an async method) to SelectorGroupChat."""

    def __init__(
        self,
        team: TeamSpec,
        client: ChatCompletionClient,
        *,
        json_schema: bool,
        on_pick: Callable[[str, bool], None],
        avoid_repeat: bool = False,
        on_notice: Callable[[str], None] = lambda text: None,
    ) -> None:
        self.team = team
        self.on_notice = on_notice
        self.max_in_a_row = team.termination.max_in_a_row
        self.names = [r.name for r in team.scheduled]
        self.client = client
        self.json_schema = json_schema
        self.on_pick = on_pick
        self.avoid_repeat = avoid_repeat
        """Leave the last speaker out of the choices: tiny models otherwise pick it forever."""

    def _prompt(
        self, thread: Sequence[BaseAgentEvent | BaseChatMessage], choices: list[str]
    ) -> list[SystemMessage | UserMessage]:
        """The compact view: roles, the task, the human's latest message, the gist of the last message (its start and its end, where a
        hand-off is usually asked for). Bounded whatever the conversation's length."""
        chat = [m for m in thread if isinstance(m, BaseChatMessage)]
        roles = "\n".join(f"- {r.name}: {r.description or r.name}" for r in self.team.scheduled)
        system = f"Pick who speaks next in a team conversation. Roles:\n{roles}"
        lines = _situation(chat)
        # Every role is listed above; name the choices only when some are ruled out.
        lines.append(
            "Next speaker?"
            if len(choices) == len(self.names)
            else f"Next speaker, one of: {', '.join(choices)}?"
        )
        return [SystemMessage(content=system), UserMessage(content="\n".join(lines), source="user")]

    def _choices(self, thread: Sequence[BaseAgentEvent | BaseChatMessage]) -> list[str]:
        last = self._last_speaker(thread)
        if self.avoid_repeat and last is not None:
            return [n for n in self.names if n != last]
        run = self._run_of(thread)
        if last is not None and run >= self.max_in_a_row and len(self.names) > 1:
            # AutoGen's selector can fall back to the previous speaker forever: redirect, and say so.
            self.on_notice(f"loop: {last} spoke {run} times in a row, so someone else speaks next")
            return [n for n in self.names if n != last]
        return list(self.names)

    def _run_of(self, thread: Sequence[BaseAgentEvent | BaseChatMessage]) -> int:
        """How many answers in a row the last speaker gave (its tool results are work, not answers)."""
        speakers = [
            m.source
            for m in thread
            if isinstance(m, BaseChatMessage) and m.source in self.names and not tool_step(m)
        ]
        if not speakers:
            return 0
        n = 0
        for who in reversed(speakers):
            if who != speakers[-1]:
                break
            n += 1
        return n

    async def select(self, thread: Sequence[BaseAgentEvent | BaseChatMessage]) -> str:
        choices = self._choices(thread)
        name = await choose(
            self.client, self._prompt(thread, choices), choices, field="speaker", json_schema=self.json_schema
        )
        fallback = name is None
        if name is None:
            name = self._by_rule(thread)
        self.on_pick(name, fallback)
        return name

    def _last_speaker(self, thread: Sequence[BaseAgentEvent | BaseChatMessage]) -> str | None:
        return next(
            (m.source for m in reversed(thread) if isinstance(m, BaseChatMessage) and m.source in self.names),
            None,
        )

    def _by_rule(self, thread: Sequence[BaseAgentEvent | BaseChatMessage]) -> str:
        """Next role after the last speaker, in team order: never a loop on one agent."""
        last = self._last_speaker(thread)
        if last is None:
            return self.names[0]
        return self.names[(self.names.index(last) + 1) % len(self.names)]


def _gist(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= 2 * GIST + 3 else f"{text[:GIST]} … {text[-GIST:]}"


def _situation(chat: Sequence[BaseChatMessage]) -> list[str]:
    """The task, the human's latest message (however old: it steers the team) and the gist of the last one."""
    task = next((m.to_model_text() for m in chat if m.source == "user"), "")
    lines = [f"Task: {one_line(task, TASK_CLIP)}"]
    later = chat[1:] if chat and chat[0].source == "user" else chat
    human = next((m for m in reversed(later) if m.source == "user"), None)
    if human is not None:
        lines.append(f"The human's latest message: {one_line(human.to_model_text(), TASK_CLIP)}")
    last = next((m for m in reversed(later) if m.source != "user"), None)
    if last is not None:
        lines.append(f"Last message [{last.source}]: {_gist(last.to_model_text())}")
    return lines
