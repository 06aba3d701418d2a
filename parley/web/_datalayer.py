"""Chainlit's history sidebar, backed by parley's own store (the source of truth).

Chainlit writes steps as the chat goes; parley already stores every event (write-ahead), so
those writes are no-ops here and reopened threads are rebuilt from parley's events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, cast

from chainlit.data.base import BaseDataLayer
from chainlit.types import Feedback, PageInfo, PaginatedResponse, Pagination, ThreadDict, ThreadFilter
from chainlit.user import PersistedUser, User

from .._decisions import was_cancelled
from .._model_notes import LOCAL, demo_marked
from ..events import (
    AnswerEvent,
    ApprovalDecisionEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    FileEvent,
    HumanMessageEvent,
    MessageEvent,
    NoteEvent,
    QuestionEvent,
    RunResult,
    RunStartedEvent,
    SubtaskEvent,
    ToolCallEvent,
    ToolResultEvent,
    ValidationEvent,
)
from ..host import ASK_HUMAN
from ..projection import Projection, waiting_key
from ..store import Store, ThreadRow
from ._controls import closing_text, queued_bubbles
from ._format import (
    NOTES,
    SYSTEM,
    agent_text,
    note,
    notes_text,
    question_text,
    resolved_text,
    subtask_text,
    validation_text,
)
from ._guard import request_login, viewer
from ._history import chart_element, file_element, file_gone_text, meter_element, side_text
from ._ratings import rated_message, rated_steps, with_feedback
from ._toolsteps import awaits_approval, plain_output, tool_summary_text

CANCELLED = "\n\n*Cancelled: nobody decided before the run was over.*"
"""What an approval's card says once the run ended before anyone decided it (as live: _controls.cancel_card)."""


def _iso(ts: float | datetime) -> str:
    moment = ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts, UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def thread_steps(thread_id: str, events: list[Event]) -> list[dict[str, Any]]:
    """Chainlit steps for a stored conversation, in order: what the user saw live, settled."""
    return thread_view(thread_id, events)[0]


def thread_as_shown(thread: dict[str, Any], tid: str, shown: list[Event], viewer: str) -> dict[str, Any]:
    """`thread` (as Chainlit read it) with the steps and elements of the events `shown` so far: what a page reopening
    a live run is sent; the ratings Chainlit read stay with their messages, and messages typed meanwhile show too."""
    steps, elements = thread_view(tid, shown, viewer)
    given = {s["id"]: s["feedback"] for s in thread.get("steps") or [] if s.get("feedback")}
    steps = with_feedback(rated_steps(tid, shown, steps), given)
    return thread | {"steps": steps + queued_bubbles(tid, shown), "elements": elements}


def thread_view(
    thread_id: str, events: list[Event], viewer: str = ""
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(steps, elements) of a stored conversation: its messages, and the pictures, downloads and usage charts
    shown under them, as `viewer` reads them (a run another member of a shared room stopped names them)."""
    reading = _Reading(thread_id, viewer)
    for i, ev in enumerate(events):
        reading.add(i, ev)
    return reading.steps, reading.finish()


def card_key(ev: Event) -> str | None:
    """The id of a message that changes once shown (an approval, a question, an escalation, a sub-task)."""
    if isinstance(ev, SubtaskEvent):
        return ev.subtask_id if ev.status == "started" else None
    return waiting_key(ev)


def card_step_id(thread_id: str, key: str) -> str:
    """The step id such a message has in a reopened thread, so a live run can still change it there."""
    return f"{thread_id}-card-{key}"


def _typed_by_user(ev: Event) -> str | None:
    """What the user typed in the chat: the task, interjections, answers to questions, their own answers."""
    if isinstance(ev, HumanMessageEvent):
        return ev.content
    if isinstance(ev, AnswerEvent) and not ev.timed_out:
        return ev.content
    if isinstance(ev, EscalationResolvedEvent) and ev.decision == "write":
        return ev.content
    return None


class _Reading:
    """A stored conversation read event by event into Chainlit steps; later events settle earlier cards."""

    def __init__(self, thread_id: str, viewer: str = "") -> None:
        self.thread_id = thread_id
        self.viewer = viewer
        self.steps: list[dict[str, Any]] = []
        self.projection = Projection()
        self.tools: dict[str, dict[str, Any]] = {}
        """Tool steps by call id, for their results."""
        self.held: dict[str, dict[str, Any]] = {}
        """Tool steps of calls waiting for approval, by call id: they show once decided."""
        self.cards: dict[str, dict[str, Any]] = {}
        """Steps that later events change: questions and sub-tasks (by question or sub-task id)."""
        self.elements: list[dict[str, Any]] = []
        """Pictures, downloads and charts, each under its step (forId)."""
        self.run = Projection()
        """The current run's events only, as the live chat counts them (its usage chart is per run)."""
        self.run_events: list[Event] = []
        self.model = ""
        """The model of the latest run: the embedded model's messages are marked as demo quality, as live."""
        self.last_result = ""
        """The step of the last "Run ended" message, which the meter goes with."""

    def add(self, i: int, ev: Event) -> None:
        settled = self.projection.apply(ev)
        if isinstance(ev, RunStartedEvent):
            self.run = Projection()
            self.run_events = []
            self.model = ev.model
        self.run.apply(ev)
        self.run_events.append(ev)
        base = {
            "id": f"{self.thread_id}-{i}",
            "threadId": self.thread_id,
            "parentId": None,
            "createdAt": _iso(ev.ts),
        }
        said = _typed_by_user(ev)
        if said is not None:
            self.steps.append(base | {"type": "user_message", "name": "user", "output": said})
            if isinstance(ev, HumanMessageEvent) and ev.mode == "task":
                return
            base = base | {"id": f"{base['id']}-note"}  # followed by the note saying what became of it
        if isinstance(ev, ToolCallEvent):
            self._tool_call(ev, base)
        elif isinstance(ev, ToolResultEvent):
            self._tool_result(ev)
        elif isinstance(ev, ApprovalDecisionEvent) and self._decided(ev, settled):
            return
        else:
            self._message(ev, base, settled)

    def _tool_result(self, ev: ToolResultEvent) -> None:
        held = self.held.pop(ev.call_id, None)
        if held is not None:  # decided meanwhile without a decision event of its own: it ran
            self.steps.append(held)
        if ev.call_id in self.tools:
            self.tools[ev.call_id]["output"] = plain_output(ev.content)
            self.tools[ev.call_id]["isError"] = ev.is_error

    def _decided(self, ev: ApprovalDecisionEvent, settled: list[Event]) -> bool:
        """A call held for approval shows from its decision on (as live: a pending call is not "used"); one the
        run's end cancelled never ran and shows none, and its card says so instead of a decision line. True when
        the decision needs no message of its own."""
        key = next((k for k, step in self.held.items() if step["name"] == ev.name), None)
        step = self.held.pop(key) if key is not None else None
        if not was_cancelled(ev):
            if step is not None:
                self.steps.append(step)
            return False
        for asked in settled:
            card = self.cards.get(card_key(asked) or "")
            if card is not None:
                card["output"] += CANCELLED
        return True

    def _tool_call(self, ev: ToolCallEvent, base: dict[str, Any]) -> None:
        if ev.name == ASK_HUMAN:
            return  # the question is its own message
        step = base | {
            "type": "tool",
            "name": ev.name,
            "input": json.dumps(ev.arguments, ensure_ascii=False),
            "output": "",
            "showInput": "json",
            "language": "text",  # the output as monospace text, as live (see _toolsteps)
            "start": base["createdAt"],
            "end": base["createdAt"],
        }
        self.tools[ev.call_id] = step
        if awaits_approval(ev, self.projection.waiting.values()):
            self.held[ev.call_id] = step
        else:
            self.steps.append(step)

    def _message(self, ev: Event, base: dict[str, Any], settled: list[Event]) -> None:
        self._settle(ev, settled)
        shown = self._shown(ev, settled)
        if shown is None:
            return
        author, text = shown
        step = base | {"type": "assistant_message", "name": author, "output": text}
        self.steps.append(step)
        self._attach(ev, step)
        key = card_key(ev)
        if key is not None:
            step["id"] = card_step_id(self.thread_id, key)
            self.cards[key] = step

    def _attach(self, ev: Event, step: dict[str, Any]) -> None:
        """What the live chat showed under the message of `ev`: the file a tool wrote, the run's usage chart."""
        step_id = step["id"]
        if isinstance(ev, FileEvent):
            element = file_element(self.thread_id, step_id, ev)
            if element is None:
                step["output"] += file_gone_text(ev)
        elif isinstance(ev, RunResult):
            self.last_result = step_id
            element = chart_element(self.thread_id, step_id, self.run.per_speaker())
        elif isinstance(ev, NoteEvent):  # the board as it stood, in the side panel (the message names it)
            board = notes_text([{"role": n.source, "text": n.content} for n in self.projection.notes])
            element = side_text(self.thread_id, f"{step_id}-notes", NOTES, board, step_id)
        else:
            return
        if element is not None:
            self.elements.append(element)

    def finish(self) -> list[dict[str, Any]]:
        """The elements, with the last run's meter last: the side panel opens with it as its title."""
        meter = meter_element(self.thread_id, self.run, self.last_result)
        return [*self.elements, meter] if meter is not None else self.elements

    def _settle(self, ev: Event, settled: list[Event]) -> None:
        """The cards `ev` changes: an answered question, a finished sub-task, sub-tasks the run cut short."""
        for asked in settled:
            card = self.cards.get(card_key(asked) or "")
            if card is None:
                continue
            if isinstance(asked, QuestionEvent) and isinstance(ev, AnswerEvent):
                card["output"] = question_text(asked, ev)
            elif isinstance(asked, SubtaskEvent) and isinstance(ev, SubtaskEvent):
                card["output"] = subtask_text(asked, ev)
            elif isinstance(asked, SubtaskEvent) and isinstance(ev, RunResult):
                card["output"] = subtask_text(asked, ended=ev.stop_reason)

    def _shown(self, ev: Event, settled: list[Event]) -> tuple[str, str] | None:
        """(author, text) of the message `ev` shows as, read with what came before it; None: none."""
        working = self.projection.working.get(ev.source)
        if isinstance(ev, EscalationResolvedEvent):
            asked = settled[0] if settled else None
            return SYSTEM, resolved_text(ev, asked.positions if isinstance(asked, EscalationEvent) else ())
        if isinstance(ev, RunResult):  # the closing line, its turns counted as the usage chart counts them
            return SYSTEM, closing_text(ev, self.run_events, self.run.per_speaker(), self.viewer)
        if isinstance(ev, MessageEvent) and ev.kind == "tool_summary":
            return ev.source, tool_summary_text(ev, working)
        if isinstance(ev, MessageEvent) and ev.kind == "text" and self.model == LOCAL:
            return ev.source, demo_marked(agent_text(ev, working))
        if isinstance(ev, MessageEvent) and working is not None:
            return ev.source, agent_text(ev, working)
        if isinstance(ev, ValidationEvent) and not ev.passed and working is not None:
            return ev.source, validation_text(ev, working)
        return note(ev)


def _signed_in() -> str:
    """Who rates: the login of the HTTP request being served (Chainlit passes no user to the feedback calls)."""
    actor = request_login()
    if actor is None:
        raise ValueError("sign in to rate a message")
    return actor


_Listed = tuple[ThreadRow, tuple[str, str] | None]
"""A sidebar row: the thread, and (the reader, their role) when it is shared with them."""


def _page(rows: list[_Listed], pagination: Pagination) -> tuple[list[_Listed], bool]:
    """The page after Chainlit's cursor (a thread id), and whether more follow."""
    start = 0
    if pagination.cursor:
        start = next((i + 1 for i, (r, _) in enumerate(rows) if r.id == pagination.cursor), len(rows))
    page = rows[start : start + (pagination.first or 20)]
    return page, start + len(page) < len(rows)


MADE_WAIT_S = 5.0
"""How long Chainlit's word to the page that its first message made a thread waits for the web chat to store it."""
_made_waits: dict[str, asyncio.Event] = {}


def thread_made(thread_id: str) -> None:
    """The web chat stored the thread of a new chat's first message (see `update_thread`)."""
    if (made := _made_waits.get(thread_id)) is not None:
        made.set()


async def _made(store: Store, thread_id: str) -> ThreadRow | None:
    """The thread once the web chat stored it, or None after MADE_WAIT_S (the message was refused, say)."""
    made = _made_waits.setdefault(thread_id, asyncio.Event())
    try:
        if (row := await store.get_thread(thread_id)) is not None:  # stored while this waiter was set up
            return row
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(made.wait(), MADE_WAIT_S)
        return await store.get_thread(thread_id)
    finally:
        if _made_waits.get(thread_id) is made:
            del _made_waits[thread_id]


class ParleyDataLayer(BaseDataLayer):
    def __init__(self, get_store: Callable[[], Awaitable[Store]]) -> None:
        # Chainlit asks for its data layer synchronously; the store opens on first use, in its loop.
        self._get_store = get_store

    async def get_user(self, identifier: str) -> PersistedUser | None:
        return PersistedUser(id=identifier, identifier=identifier, createdAt=_iso(datetime.now(UTC)))

    async def create_user(self, user: User) -> PersistedUser | None:
        return await self.get_user(user.identifier)

    def _thread_dict(
        self,
        row: ThreadRow,
        steps: list[dict[str, Any]] | None = None,
        elements: list[dict[str, Any]] | None = None,
        *,
        member: tuple[str, str] | None = None,
    ) -> ThreadDict:
        """Chainlit's thread. `member`: (user, role) of a member of the shared room it is read for: the sidebar marks
        it shared with its owner's name, and Chainlit, which lets only a thread's author open it, sees them as that."""
        name = row.title or row.team
        metadata: dict[str, Any] = {"chat_profile": row.team}
        if member is not None:
            name = f"{name} · shared by {row.owner}" + (", read-only" if member[1] == "read" else "")
            metadata |= {"shared_by": row.owner, "role": member[1]}
        author = member[0] if member is not None else row.owner
        return cast(
            ThreadDict,
            {
                "id": row.id,
                "createdAt": _iso(row.created_at),
                "name": name,
                "userId": author,
                "userIdentifier": author,
                "tags": [row.team],
                "metadata": metadata,
                "steps": steps or [],
                "elements": elements or [],
            },
        )  # parley's steps are plain dicts of Chainlit's StepDict shape

    async def list_threads(
        self, pagination: Pagination, filters: ThreadFilter
    ) -> PaginatedResponse[ThreadDict]:
        """The user's conversations and those shared with them, most recently updated first."""
        user = filters.userId or ""
        store = await self._get_store()
        rows: list[_Listed] = [(r, None) for r in await store.list_threads(user, limit=200)]
        if user:
            rows += [(r, (user, role)) for r, role in await store.shared_with(user, limit=200)]
        rows.sort(key=lambda item: (item[0].updated_at, item[0].created_at), reverse=True)
        if filters.search:
            needle = filters.search.lower()
            rows = [(r, m) for r, m in rows if needle in (r.title or "").lower() or needle in r.team.lower()]
        page, more = _page(rows, pagination)
        return PaginatedResponse(
            pageInfo=PageInfo(
                hasNextPage=more,
                startCursor=page[0][0].id if page else None,
                endCursor=page[-1][0].id if page else None,
            ),
            data=[self._thread_dict(r, member=m) for r, m in page],
        )

    async def _member(self, store: Store, row: ThreadRow) -> tuple[str, str] | None:
        """(the viewer, their role) when a member of its shared room other than its owner reads `row`, else None."""
        who = viewer()
        if who is None or who == row.owner:
            return None
        role = await store.access(who, row.id)
        return (who, role) if role in ("read", "write") else None

    async def get_thread(self, thread_id: str) -> ThreadDict | None:
        store = await self._get_store()
        row = await store.get_thread(thread_id)
        if row is None:
            return None
        events = await store.load_events(thread_id)
        steps, elements = thread_view(thread_id, events, viewer() or row.owner)
        given = {
            r.step_id: {"id": r.id, "forId": r.step_id, "value": r.value, "comment": r.comment}
            for r in await store.feedback_of(thread_id)
        }  # the thumbs show as they were left
        steps = with_feedback(rated_steps(thread_id, events, steps), given)
        return self._thread_dict(row, steps, elements, member=await self._member(store, row))

    async def get_thread_author(self, thread_id: str) -> str:
        """The thread's owner; to a member of its shared room reading it (see `_guard.VIEWER`), that member: Chainlit
        lets only the author open a thread. A rename or a delete is never a read: those stay the owner's."""
        store = await self._get_store()
        row = await store.get_thread(thread_id)
        if row is None:
            return ""
        member = await self._member(store, row)
        return member[0] if member is not None else row.owner

    async def delete_thread(self, thread_id: str) -> None:
        await (await self._get_store()).delete_thread(thread_id)

    async def update_thread(
        self,
        thread_id: str,
        name: str | None = None,
        user_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
    ) -> None:
        if not name:  # only a title is kept (parley's events are the record): nothing to read or write
            return
        store = await self._get_store()
        row = await store.get_thread(thread_id)
        if row is None:  # a new chat's first message: Chainlit tells the page once this returns, and
            row = await _made(store, thread_id)  # the page lists its threads once then: wait until it is one
        if row is not None and not row.title:
            await store.rename_thread(thread_id, name[:200])

    # parley's events are the record; Chainlit's own step and element writes are not needed.
    async def create_step(self, step_dict: Any) -> None:
        return None

    async def update_step(self, step_dict: Any) -> None:
        return None

    async def delete_step(self, step_id: str) -> None:
        return None

    async def create_element(self, element: Any) -> None:
        return None

    async def get_element(self, thread_id: str, element_id: str) -> Any:
        return None

    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        return None

    # Thumbs up and down (on an agent message's rating step, see _ratings): kept in parley's store with the
    # message rated, audited, exported with the audit. Only the conversation's owner rates, and only its messages.
    async def upsert_feedback(self, feedback: Feedback) -> str:
        actor = _signed_in()
        store = await self._get_store()
        thread_id = feedback.threadId or ""
        row = await store.get_thread(thread_id) if thread_id else None
        if row is None:
            raise ValueError("no such conversation to rate a message of")
        if row.owner != actor:
            raise ValueError("this conversation is not yours: its messages are rated by its owner")
        events = await store.load_events(thread_id)
        rated = rated_message(rated_steps(thread_id, events, thread_steps(thread_id, events)), feedback.forId)
        if rated is None:
            raise ValueError("only an agent's message of this conversation can be rated")
        return await store.upsert_feedback(
            thread_id,
            feedback.forId,
            int(feedback.value),
            actor=actor,
            comment=feedback.comment,
            message=str(rated.get("output") or ""),
        )

    async def delete_feedback(self, feedback_id: str) -> bool:
        return await (await self._get_store()).delete_feedback(feedback_id, actor=_signed_in())

    async def build_debug_url(self) -> str:
        return ""

    async def get_favorite_steps(self, user_id: str) -> list[Any]:
        return []

    async def close(self) -> None:
        await (await self._get_store()).close()
