"""The web chat's run controls: a Stop button that ends the run in one click, the Interrupt command, both
shown only while a run is live; and the run's closing status line, in plain words.

Chainlit's own stop button cannot be used: it shows only while Chainlit runs a task, and the composer is
disabled for as long, while parley's composer must stay open so that what the user types joins the run. So the
run's controls are a small message kept last on the page while the run goes on, with a Stop button; Interrupt is
a composer command (offered only while a run is live): select it, type, send, and the message cuts the current
turn short and joins at once. Plain sending joins after the current turn.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import chainlit as cl
from chainlit.types import CommandDict

from .._outcome import ending, shows_turn, spent
from ..events import ApprovalRequestEvent, Event, HumanMessageEvent, HumanQueuedEvent
from ..events import RunResult as Result
from ._composer import say_system
from ._format import SYSTEM, note

STOP_ACTION = "parley_stop"
INTERRUPT: CommandDict = {
    "id": "Interrupt",
    "icon": "zap",
    "description": "Cut the current turn short: your message joins now",
    "button": True,
    "persistent": False,
    "selected": False,
}
LIVE_COMMANDS: list[CommandDict] = [INTERRUPT]
"""The composer's commands while a run is live (none while idle)."""


def status_line(result: Result, last_turn: int, turns: int | None = None, viewer: str = "") -> str:
    """The run's closing line: why it ended in plain words, at which turn, then what it spent. `turns`: the
    agent turns the page showed (what the end-of-run chart counts), if known. `viewer`: whose page it is (a run
    another member of a shared room stopped says who: `Stopped by bob`)."""
    words, rest = ending(result.stop_reason, result.detail, last_turn, viewer)
    return f"**Run ended** · **{words}**{rest} · {spent(result, turns)}"


def closing_text(
    result: Result,
    events: Sequence[Event],
    per_speaker: Sequence[tuple[str, int, int, int]],
    viewer: str = "",
) -> str:
    """The status line of a run that ended, its turns counted as the end-of-run chart counts them, for `viewer`."""
    return status_line(result, last_turn(events), sum(turns for *_, turns in per_speaker), viewer)


def last_turn(events: Sequence[Event]) -> int:
    """The turn the run was at: the highest turn an agent's event (a message, a call, a speaker picked) showed."""
    return max((ev.turn for ev in events if shows_turn(ev)), default=0)


def approval_buttons(ev: ApprovalRequestEvent, card: str) -> list[cl.Action]:
    """Approve and Deny… for the approval card whose step id is `card`."""
    key = {"request_id": ev.request_id}
    approve = cl.Action(
        name="parley_approve", payload=key, label="Approve", icon="check", id=button_id("approve", card)
    )
    deny = cl.Action(
        name="parley_deny",
        payload=key,
        label="Deny…",
        icon="x",
        tooltip="Refuse, with a reason for the agent",
        id=button_id("deny", card),
    )
    return [approve, deny]


def button_id(kind: str, card: str | None = None) -> str:
    """A button's id on the page, `parley-<kind>-…`: the page's style sheet draws these as real buttons.

    A decision's buttons are named after their card (`card`, its step id), the same in every process and on every
    page: Chainlit's page keeps buttons apart from messages, across its sockets and the threads it opens, so a
    removal lost with a socket the page dropped can be sent again by whichever session serves it next."""
    return f"parley-{kind}-{card or uuid.uuid4()}"


def queued_bubbles(thread_id: str, events: Sequence[Event]) -> list[dict[str, Any]]:
    """The user's messages typed during the current run and not joined yet, as the steps of a reopened page
    (the stored thread shows a message once it joins)."""
    start = max((i for i, ev in enumerate(events) if ev.type == "run_started"), default=0)
    run = events[start:]
    queued = [ev for ev in run if isinstance(ev, HumanQueuedEvent)]
    joined = sum(1 for ev in run if isinstance(ev, HumanMessageEvent) and ev.mode != "task")
    return [
        {
            "id": f"{thread_id}-queued-{start}-{i}",
            "threadId": thread_id,
            "parentId": None,
            "createdAt": _iso(ev.ts),
            "type": "user_message",
            "name": "user",
            "output": ev.content,
        }
        for i, ev in enumerate(queued)
        if i >= joined
    ]


def _iso(ts: float | datetime) -> str:
    moment = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def commands() -> list[CommandDict]:
    """The composer's commands when a page opens: none while idle (a live run offers its own)."""
    return []


_TURNS = frozenset({"chunk", "message", "turn_abandoned", "validation"})
_QUIET = frozenset({"usage", "tool_progress", "tool_result", "answer", "result"})
"""Events that add no message to the page (they change one, or nothing)."""


def adds_message(ev: Event, streaming: Mapping[str, Any], handled: bool) -> bool:
    """Whether showing `ev` adds a message at the bottom of the page (the run's controls then move below it).
    `handled`: the page has a way of its own to show it (otherwise it shows as its note, if any)."""
    if ev.type in ("chunk", "message", "turn_abandoned"):
        return ev.source not in streaming  # a message streamed so far stays where its first piece put it
    if ev.type in _QUIET:
        return False
    return handled or note(ev) is not None


def turn_of(ev: Event) -> int | None:
    """The agent turn an event shows, if it shows one."""
    return ev.turn if ev.type in _TURNS else None


def index_after(history: Sequence[Event], ev: Event, default: int) -> int:
    """Where `ev` ends in the history (it was added last, or a few events before the last)."""
    for i in range(len(history) - 1, -1, -1):
        if history[i] is ev:
            return i + 1
    return default


async def cancel_card(card: cl.Message | None) -> None:
    """An approval's card once the run ended before anyone decided it."""
    if card is not None:
        card.content += "\n\n*Cancelled: nobody decided before the run was over.*"
        await card.update()


_RELEASING: set[asyncio.Task[None]] = set()


async def release_when_shown(chat: Any) -> None:
    """A page left `chat` (a ChatSession): an idle conversation lets its MCP servers go at once; a running one
    goes on, and lets them go when its run has been shown, unless a page reopened the thread meanwhile."""
    if not chat.showing:
        await chat.conversation.release()
        return
    pages = chat.handover.count
    task: asyncio.Task[None] = chat.task

    def done(_: asyncio.Task[None]) -> None:
        if pages == chat.handover.count and not chat.showing:
            releasing = asyncio.get_running_loop().create_task(chat.conversation.release())
            _RELEASING.add(releasing)  # held until done: the loop keeps only a weak reference to a task
            releasing.add_done_callback(_RELEASING.discard)

    task.add_done_callback(done)


class Offers:
    """The buttons offered on the run's cards (approvals, escalations), by card: every one ever sent to a page,
    until the card is settled.

    Chainlit's page keeps buttons apart from messages, and keeps them across its sockets: it adds one per `action`
    event and drops one per `remove_action` event, by id. A reopened page may connect more than once in a row (once
    for the thread, again when it has applied the thread's team), and drops a socket's events once it has moved
    on: a removal carried by such a socket never arrives, while the buttons an earlier socket brought stay. So a
    card's buttons are removed by every id ever offered, on each new socket and when the card is settled
    (removing an id the page does not hold does nothing)."""

    def __init__(self) -> None:
        self._sent: dict[str, list[cl.Action]] = {}
        self._settled: set[str] = set()
        """Cards whose decision was made: never offered buttons again (a page reconnecting while the run ends
        would otherwise be handed a settled card's buttons back)."""

    def sent(self, key: str, card: cl.Message) -> None:
        """`card` was sent with its buttons."""
        self._sent.setdefault(key, []).extend(card.actions)

    async def offer(self, key: str, card: cl.Message, actions: list[cl.Action]) -> None:
        """Give `card`, already on the page, the buttons `actions`, unless it is settled, even while they go out."""
        if key in self._settled:
            return
        card.actions = actions
        self._sent.setdefault(key, []).extend(actions)
        for action in actions:
            await action.send(for_id=card.id)
            if key in self._settled:  # settled meanwhile: what went out before the withdrawal goes too
                await self.drop(actions)
                card.actions = []
                return

    @staticmethod
    async def drop(buttons: Sequence[cl.Action]) -> None:
        """Tell the page to drop these buttons, whether it holds them or not (a decision's ids never change)."""
        for action in buttons:
            await action.remove()

    async def clear_page(self, key: str | None = None) -> None:
        """Every button offered so far (on the card `key`, or on any) leaves the page, whichever socket brought
        it; the record stays, should this socket be dropped in turn."""
        await self.drop([a for card, actions in self._sent.items() if key in (None, card) for a in actions])

    async def decided(self, key: str) -> None:
        """This page's user made the card's decision and the run took it: its buttons leave the page now, and no
        page is offered them again, though the run has yet to show the decision (a page reconnecting meanwhile
        would otherwise be handed the buttons back, and keep them). The record stays for `withdraw`."""
        self._settled.add(key)
        await self.clear_page(key)

    async def withdraw(self, key: str, card: cl.Message | None) -> None:
        """The card's decision was made (or the run ended): all its buttons go, for good."""
        self._settled.add(key)
        await self.drop(self._sent.pop(key, []))
        if card is not None:
            card.actions = []


class LiveControls:
    """The controls of the run in progress on one page: the Stop button, kept on the page's last message,
    and the composer's Interrupt command. Absent while no run is live."""

    def __init__(self, extra: list[CommandDict] | None = None, turn: int = 0) -> None:
        self.message: cl.Message | None = None
        self.live = False
        self.turn = turn
        self.extra = extra or []
        """Commands the page offers whether a run is live or not (Share, to the conversation's owner)."""

    def commands(self) -> list[CommandDict]:
        """The composer's commands now: Interrupt while the run is live, then the page's own."""
        return [*(LIVE_COMMANDS if self.live else []), *self.extra]

    def _text(self) -> str:
        at = f"turn {self.turn}" if self.turn else "starting"
        return (
            f"*The team is working ({at}).* Type to join after this turn; "
            "**Interrupt** (in the composer) cuts the turn short with your message."
        )

    async def start(self, turn: int = 0) -> None:
        """A run started (or a page reopened it at `turn`): offer its controls."""
        self.live = True
        self.turn = turn
        await cl.context.emitter.set_commands(self.commands())
        await self.keep_last()

    async def keep_last(self, turn: int | None = None) -> None:
        """Something was added to the page: move the controls below it (a message cannot be moved: the old
        one goes, a new one comes)."""
        if not self.live:
            return
        if turn is not None:
            self.turn = max(self.turn, turn)
        old = self.message
        await self._remove()
        if old is not None:
            # The same message again, at the bottom: the page keeps a message's buttons apart from it, by the
            # message's id, so the Stop button sent with it the first time shows under it again without being
            # sent again (two socket events per move instead of three).
            self.message = cl.Message(content=self._text(), author=SYSTEM, id=old.id)
        else:
            stop = cl.Action(
                name=STOP_ACTION,
                payload={},
                label="Stop",
                icon="square",
                tooltip="End the run now",
                id=button_id("stop"),
            )
            self.message = cl.Message(content=self._text(), author=SYSTEM, actions=[stop])
        await self.message.send()

    async def end(self) -> None:
        """The run ended or was stopped: the controls go."""
        if not self.live:
            return
        self.live = False
        await self._remove()
        await cl.context.emitter.set_commands(self.commands())

    async def _remove(self) -> None:
        old, self.message = self.message, None
        if old is not None:
            await old.remove()


@cl.action_callback(STOP_ACTION)
async def _stop_clicked(action: cl.Action) -> None:
    chat = cl.user_session.get("parley")
    stop = getattr(chat, "stop_now", None)
    if stop is None or not await stop():  # the run ended as the click came, or the page has no chat
        await say_system("Nothing is running.")
