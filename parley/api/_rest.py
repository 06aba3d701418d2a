"""The REST routes under /api/v1: teams, conversations, messages, stop, decisions, the audit export, events, the
files tools wrote."""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials

from .._audit import markdown, record
from .._text import human_text
from ..cluster import RemoteRun
from ..errors import ConfigError, UnknownRequestError, UsageError
from ..paths import data_dir_path, inside
from ..run import Run
from ..store import ThreadRow
from ._auth import BEARER, hub_of, user_of
from ._hub import ApiError, Hub, pending
from ._schemas import (
    AnswerIn,
    ApprovalIn,
    ConversationIn,
    ConversationOut,
    ConversationRead,
    Decided,
    EscalationIn,
    MessageIn,
    Problem,
    RoleOut,
    Sent,
    Stopped,
    StoredEvent,
    TeamOut,
)
from ._sse import SSE_TYPE, stream

__all__ = ["router"]

ERRORS: dict[int | str, dict[str, object]] = {
    code: {"model": Problem, "description": why}
    for code, why in {
        400: "Bad input: what is wrong, and what to send instead",
        401: "No API token, or one that is not valid",
        403: "The conversation is another user's, or shared with you read-only",
        404: "No such conversation, team, or open request",
        409: "Not possible in the conversation's state (e.g. nothing is waiting)",
    }.items()
}
router = APIRouter(responses=ERRORS)
TEXT = {"schema": {"type": "string"}}
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"})
"""Files sent as what they are: pictures a browser never runs, and plain text. Anything else is a download."""
DOWNLOAD = "application/octet-stream"
FILE_POLICY = "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; sandbox"


async def _user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
) -> str:
    return await user_of(request, credentials)


User = Annotated[str, Depends(_user)]
ConvId = Annotated[str, "the conversation's id"]


def _hub(request: Request) -> Hub:
    return hub_of(request)


Hubbed = Annotated[Hub, Depends(_hub)]


def _title(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text[:200]).split())[:200] or "(untitled)"


def _out(row: ThreadRow, hub: Hub) -> ConversationOut:
    live = hub.live(row.id)
    return ConversationOut(
        id=row.id,
        team=row.team,
        model=row.model,
        title=row.title,
        created_at=row.created_at,
        updated_at=row.updated_at,
        running=live is not None and live.running,
    )


@router.get("/teams", summary="List the teams")
async def list_teams(user: User, hub: Hubbed) -> list[TeamOut]:
    out: list[TeamOut] = []
    for entry in hub.teams():
        spec = entry.spec
        if spec is None:
            out.append(TeamOut(name=entry.name, error=entry.error or "broken"))
            continue
        roles = [RoleOut(name=r.name, description=r.description) for r in spec.roles]
        out.append(
            TeamOut(
                name=spec.name,
                description=spec.description,
                pattern=spec.pattern,
                model=spec.model,
                roles=roles,
            )
        )
    return out


@router.get("/conversations", summary="List your conversations, most recently updated first")
async def list_conversations(
    user: User, hub: Hubbed, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[ConversationOut]:
    rows = await (await hub.store()).list_threads(user, limit)
    return [_out(row, hub) for row in rows]


@router.post("/conversations", status_code=201, summary="Create a conversation (and start it on a message)")
async def create_conversation(body: ConversationIn, user: User, hub: Hubbed) -> ConversationOut:
    if body.message is not None:
        _check_text(body.message)
    conv = await hub.create(user, body.team, body.model, body.title or _title(body.message or body.team))
    if body.message is not None:
        await hub.say(conv, body.message, user=user)
    assert conv.thread_id is not None
    return _out(await hub.owned(user, conv.thread_id), hub)


@router.get(
    "/conversations/{conversation_id}", summary="Read a conversation: its events and what it waits for"
)
async def read_conversation(conversation_id: ConvId, user: User, hub: Hubbed) -> ConversationRead:
    row = await hub.watched(user, conversation_id)
    rows = await (await hub.store()).events(conversation_id)
    live = hub.live(conversation_id)
    return ConversationRead(
        **_out(row, hub).model_dump(),
        pending=pending(live) if live is not None else pending_none(),
        events=[StoredEvent(seq=r.seq, type=r.type, event=r.payload) for r in rows],
    )


def pending_none() -> dict[str, list[dict[str, object]]]:
    return {"approvals": [], "questions": [], "escalations": []}


@router.post(
    "/conversations/{conversation_id}/messages", status_code=202, summary="Say something, or interrupt"
)
async def post_message(conversation_id: ConvId, body: MessageIn, user: User, hub: Hubbed) -> Sent:
    _check_text(body.text)
    conv = await hub.open(user, conversation_id)
    run = await hub.say(conv, body.text, body.mode, user=user)
    return Sent(run=run.number, running=run.result is None)


@router.post("/conversations/{conversation_id}/stop", summary="Stop the run in progress now")
async def stop(conversation_id: ConvId, user: User, hub: Hubbed) -> Stopped:
    await hub.owned(user, conversation_id)
    run = await hub.live_run(user, conversation_id)
    if run is None:
        return Stopped(stopped=False)
    run.stop(actor=user)
    await run.wait()
    return Stopped(stopped=True)


async def _waiting_run(user: str, hub: Hub, tid: str) -> Run | RemoteRun:
    await hub.owned(user, tid)
    run = await hub.live_run(user, tid)
    if run is None:
        raise ApiError(409, "nothing is waiting: no run is in progress on this conversation")
    return run


def _decide(action: str, do: Callable[[], None]) -> Decided:
    """Do what a person decided; the run's refusals said as HTTP answers."""
    try:
        do()
    except UnknownRequestError as exc:
        raise ApiError(404, f"no open {action} of that id: {exc.args[0] if exc.args else exc}") from exc
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from exc
    except UsageError as exc:
        raise ApiError(409, str(exc)) from exc
    return Decided()


@router.post("/conversations/{conversation_id}/approvals/{request_id}", summary="Approve or deny a tool call")
async def decide_approval(
    conversation_id: ConvId, request_id: str, body: ApprovalIn, user: User, hub: Hubbed
) -> Decided:
    run = await _waiting_run(user, hub, conversation_id)
    if body.approve:
        return _decide("approval request", lambda: run.approve(request_id, actor=user))
    return _decide("approval request", lambda: run.deny(request_id, body.reason, actor=user))


@router.post("/conversations/{conversation_id}/questions/{question_id}", summary="Answer a role's question")
async def answer_question(
    conversation_id: ConvId, question_id: str, body: AnswerIn, user: User, hub: Hubbed
) -> Decided:
    run = await _waiting_run(user, hub, conversation_id)
    return _decide("question", lambda: run.answer(question_id, body.text, actor=user))


@router.post("/conversations/{conversation_id}/escalations/{escalation_id}", summary="Settle an escalation")
async def resolve_escalation(
    conversation_id: ConvId, escalation_id: str, body: EscalationIn, user: User, hub: Hubbed
) -> Decided:
    given = [body.choose is not None, body.text is not None, body.proceed]
    if sum(given) != 1:
        raise ApiError(
            400, "send exactly one of choose (a position, 1-based), text (your answer) and proceed: true"
        )
    run = await _waiting_run(user, hub, conversation_id)
    return _decide(
        "escalation",
        lambda: run.resolve(
            escalation_id, choose=body.choose, text=body.text, proceed=body.proceed, actor=user
        ),
    )


@router.get(
    "/conversations/{conversation_id}/audit",
    summary="Export the audit trail (as `parley audit ID --format md|jsonl`)",
    response_model=None,
    responses={200: {"content": {"text/markdown": TEXT, "application/jsonl": TEXT}}},
)
async def export_audit(
    conversation_id: ConvId, user: User, hub: Hubbed, format: Literal["md", "jsonl"] = "md"
) -> PlainTextResponse:
    row = await hub.watched(user, conversation_id)
    records = [record(r) for r in await (await hub.store()).audit_log(conversation_id)]
    if format == "jsonl":
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        return PlainTextResponse(body, media_type="application/jsonl")
    return PlainTextResponse(markdown(conversation_id, row.team, records), media_type="text/markdown")


@router.get(
    "/conversations/{conversation_id}/events",
    summary="Stream the conversation's events (Server-Sent Events, resumable with Last-Event-ID)",
    response_model=None,
    responses={200: {"content": {SSE_TYPE: TEXT}, "description": "`id:` the event's seq, `event:` its type"}},
)
async def events(
    conversation_id: ConvId,
    user: User,
    hub: Hubbed,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
    after: Annotated[
        int | None, Query(ge=0, description="Start after this seq (as Last-Event-ID does)")
    ] = None,
    follow: Annotated[
        bool, Query(description="Stay open for what comes next (false: the stored events only)")
    ] = True,
    until_result: Annotated[bool, Query(description="Close after the next run's result")] = False,
    chunks: Annotated[
        bool, Query(description="Also the streamed text of a run in progress (`event: chunk`, without an id)")
    ] = False,
) -> StreamingResponse:
    await hub.watched(user, conversation_id)
    start = after or 0
    if last_event_id is not None and last_event_id.strip():
        if not last_event_id.strip().isdigit():
            raise ApiError(400, "Last-Event-ID is the seq of the last event received (a number)")
        start = int(last_event_id.strip())
    return StreamingResponse(
        stream(
            hub, conversation_id, start, user=user, follow=follow, until_result=until_result, chunks=chunks
        ),
        media_type=SSE_TYPE,
        headers={"cache-control": "no-store", "x-accel-buffering": "no"},
    )


@router.get(
    "/conversations/{conversation_id}/files/{name:path}",
    summary="Download a file a tool wrote in the conversation's workspace (a chart, a document)",
    response_model=None,
    responses={
        200: {"content": {t: TEXT for t in sorted(INLINE_TYPES | {DOWNLOAD})}, "description": "the file"}
    },
)
async def workspace_file(conversation_id: ConvId, name: str, user: User, hub: Hubbed) -> FileResponse:
    await hub.watched(user, conversation_id)
    try:  # the id is the server's own form (checked above): never a path
        path = inside(data_dir_path() / "workspaces" / conversation_id, name)
        found = path.is_file()
    except (ValueError, OSError):  # out of the workspace; a name too long for the file system
        path, found = None, False
    if path is None or not found:
        raise ApiError(
            404, f"no file {name[:200]!r} in this conversation's workspace (a file event names each)"
        )
    guessed = mimetypes.guess_type(path.name)[0] or ""
    shown = guessed if guessed in INLINE_TYPES else DOWNLOAD
    return FileResponse(
        path,
        media_type=shown,
        filename=path.name,
        content_disposition_type="inline" if shown in INLINE_TYPES else "attachment",
        headers={"content-security-policy": FILE_POLICY, "x-content-type-options": "nosniff"},
    )


def _check_text(text: str) -> None:
    try:
        human_text(text)
    except ConfigError as exc:
        raise ApiError(400, str(exc)) from exc
    if not text.strip():
        raise ApiError(400, "an empty message cannot be sent: say something")
