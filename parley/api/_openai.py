"""An OpenAI-compatible endpoint: `POST /v1/chat/completions` where `model` names a team (`TEAM` or `TEAM@MODEL`),
and `GET /v1/models` listing the teams.

The reply's `content` is the team's final answer. Streamed, each agent's message arrives first as a chunk of its
own whose `delta` carries it as `reasoning_content` (prefixed with the speaker, `[writer] …`) and names the
speaker in `name` and `parley.speaker`; then the final answer comes as `content`, then a last chunk with the
finish reason and `usage`. Standard clients ignore the fields they do not know and show the answer; front ends
that show reasoning show the team at work. Nobody can approve a tool call or answer a question over this endpoint:
calls that need approval are denied (saying so to the agent), questions get the team's default answer, and an
escalation ends the run (use /api/v1 for those).
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, ConfigDict, Field

from ..cluster import RemoteRun
from ..conversation import Conversation
from ..events import ApprovalRequestEvent, EscalationEvent, Event, MessageEvent, QuestionEvent, RunResult
from ..run import Run
from ._auth import BEARER, hub_of, user_of
from ._history import Turn, find, key_of, with_context
from ._hub import ApiError, Hub
from ._schemas import MAX_TEXT

__all__ = ["router"]

NO_APPROVER = (
    "nobody can approve tool calls over the OpenAI-compatible endpoint: the call is denied (the /api/v1 API "
    "lets a person decide)"
)
LENGTH = frozenset({"max_tokens"})
REMEMBERED = 10_000
"""Histories kept in memory, leading to their conversations without a look in the store."""


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIProblem(BaseModel):
    error: OpenAIError


router = APIRouter(
    responses={
        code: {"model": OpenAIProblem, "description": why}
        for code, why in {
            400: "Bad input (the body, the messages, the model)",
            401: "No API token, or one that is not valid",
            404: "No such team",
            409: "The conversation is answering another request",
            502: "The team's run failed",
        }.items()
    }
)


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str = Field(max_length=40)
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None


class ChatRequest(BaseModel):
    """OpenAI's chat completion request; fields parley does not use (temperature, …) are accepted and ignored."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(min_length=1, max_length=500)
    """A team (`GET /v1/models`), or `TEAM@MODEL` to run it on another model."""
    messages: list[ChatMessage] = Field(min_length=1, max_length=10_000)
    stream: bool = False


async def _user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)]
) -> str:
    return await user_of(request, credentials)


def _hub(request: Request) -> Hub:
    return hub_of(request)


@router.get("/models", summary="The teams, as models")
async def models(user: Annotated[str, Depends(_user)], hub: Annotated[Hub, Depends(_hub)]) -> dict[str, Any]:
    data = [
        {"id": e.name, "object": "model", "created": 0, "owned_by": "parley"}
        for e in hub.teams()
        if e.spec is not None
    ]
    return {"object": "list", "data": data}


def _text(message: ChatMessage) -> str:
    if message.content is None or isinstance(message.content, str):
        return message.content or ""
    parts: list[str] = []
    for part in message.content:
        if part.get("type") != "text" or not isinstance(part.get("text"), str):
            raise ApiError(
                400,
                f"only text reaches a team: a {message.role} message has a part of type {part.get('type')!r}",
            )
        parts.append(str(part["text"]))
    return "\n".join(parts)


def _split(messages: list[ChatMessage]) -> tuple[list[str], list[Turn], str]:
    """(instructions, the history before, the new user message)."""
    system = [_text(m) for m in messages if m.role in ("system", "developer")]
    turns: list[Turn] = [(m.role, _text(m)) for m in messages if m.role in ("user", "assistant")]
    if not turns or turns[-1][0] != "user" or not turns[-1][1].strip():
        raise ApiError(400, "the last message must be the user's, with text: it is what the team answers")
    if len(turns[-1][1]) > MAX_TEXT:
        raise ApiError(400, f"the user's message is over {MAX_TEXT} characters")
    return system, turns[:-1], turns[-1][1]


Asked = tuple[list[str], list[Turn]]
"""A request's instructions and turns, the new user message last."""


async def _conversation(
    hub: Hub, user: str, model: str, messages: list[ChatMessage]
) -> tuple[Conversation, str, Asked]:
    """(the conversation, the task to give it, what the client asked: its instructions and turns)."""
    team, _, model_name = model.partition("@")
    system, prior, message = _split(messages)
    conv = None
    if prior:
        tid = hub.histories.get((user, key_of(system, prior)))
        if tid is None:
            hub.team(team)
            tid = await find(await hub.store(), user, team, system, prior)
        if tid is not None:
            conv = await _reopen(hub, user, tid, team)
    if conv is not None and conv.running:
        raise ApiError(409, "this conversation is answering another request: wait for it, then send again")
    asked = (system, [*prior, ("user", message)])
    if conv is None:
        conv = await hub.create(user, team, model_name or None, _title(message))
        message = with_context(system, prior, message)
    return conv, message, asked


async def _reopen(hub: Hub, user: str, tid: str, team: str) -> Conversation | None:
    try:
        conv = await hub.open(user, tid)
    except ApiError:  # deleted since, or no longer this user's: start a new one
        return None
    return conv if conv.team.name == team else None


def _remember(hub: Hub, user: str, asked: Asked, answer: str, tid: str | None) -> None:
    """The history the client sends next (what it asked, then this answer) leads to this conversation."""
    if tid is not None:
        system, turns = asked
        hub.histories[(user, key_of(system, [*turns, ("assistant", answer)]))] = tid
        while len(hub.histories) > REMEMBERED:  # the oldest first: the store still finds them (see find)
            del hub.histories[next(iter(hub.histories))]


def _title(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text[:200]).split())[:200] or "(untitled)"


async def _settled(conv: Conversation, run: Run | RemoteRun) -> AsyncIterator[Event]:
    """The run's events; what would wait for a person is settled as nobody is there."""
    async for ev in run:
        if isinstance(ev, ApprovalRequestEvent):
            run.deny(ev.request_id, NO_APPROVER, actor="api")
        elif isinstance(ev, QuestionEvent):
            run.answer(ev.question_id, conv.team.human.default_answer, actor="api")
        elif isinstance(ev, EscalationEvent):
            run.leave_escalated()
        yield ev


def _usage(result: RunResult) -> dict[str, int]:
    return {
        "prompt_tokens": result.prompt_tokens,
        "completion_tokens": result.completion_tokens,
        "total_tokens": result.prompt_tokens + result.completion_tokens,
    }


def _finish(result: RunResult) -> str:
    return "length" if result.stop_reason in LENGTH else "stop"


def _extra(conv: Conversation, run: Run | RemoteRun, result: RunResult | None = None) -> dict[str, Any]:
    extra: dict[str, Any] = {"conversation": conv.thread_id, "run": run.number}
    if result is not None:
        extra |= {"stop_reason": result.stop_reason, "detail": result.detail, "cost_usd": result.cost_usd}
    return extra


@router.post("/chat/completions", summary="A team answers the chat (OpenAI-compatible)")
async def chat_completions(
    body: ChatRequest, user: Annotated[str, Depends(_user)], hub: Annotated[Hub, Depends(_hub)]
) -> Any:
    conv, task, asked = await _conversation(hub, user, body.model, body.messages)
    run = await hub.say(conv, task, user=user)
    ident = f"chatcmpl-{conv.thread_id}-{run.number}"
    headers = {"x-parley-conversation": str(conv.thread_id)}
    if body.stream:
        chunks = _stream(
            conv, run, ident, body.model, lambda answer: _remember(hub, user, asked, answer, conv.thread_id)
        )
        return StreamingResponse(
            chunks, media_type="text/event-stream", headers={**headers, "cache-control": "no-store"}
        )
    result = None
    async for ev in _settled(conv, run):
        if isinstance(ev, RunResult):
            result = ev
    assert result is not None
    if result.stop_reason == "error":
        raise ApiError(502, f"the team's run failed: {result.detail}")
    _remember(hub, user, asked, result.content, conv.thread_id)
    answer = {
        "id": ident,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": result.content},
                "finish_reason": _finish(result),
                "logprobs": None,
            }
        ],
        "usage": _usage(result),
        "parley": _extra(conv, run, result),
    }
    return JSONResponse(answer, headers=headers)


async def _stream(
    conv: Conversation, run: Run | RemoteRun, ident: str, model: str, remember: Callable[[str], None]
) -> AsyncIterator[str]:
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **more: Any) -> str:
        body = {
            "id": ident,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **more,
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""}, parley=_extra(conv, run))
    async for ev in _settled(conv, run):
        if isinstance(ev, MessageEvent) and ev.kind != "handoff":
            said = {"reasoning_content": f"[{ev.source}] {ev.content}\n\n", "name": ev.source}
            yield chunk(said, parley={"speaker": ev.source, "turn": ev.turn})
        elif isinstance(ev, RunResult):
            if ev.stop_reason == "error":
                error = {"message": f"the team's run failed: {ev.detail}", "type": "run_error", "code": None}
                yield f"data: {json.dumps({'error': error}, ensure_ascii=False)}\n\n"
            else:
                remember(ev.content)
                yield chunk({"content": ev.content})
                yield chunk({}, _finish(ev), usage=_usage(ev), parley=_extra(conv, run, ev))
    yield "data: [DONE]\n\n"
