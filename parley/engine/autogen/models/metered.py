"""The metered client: every model call of a conversation passes here, on its way to any ChatCompletionClient.

It refuses calls past the budget, shapes each request as its backend takes it, checks it fits the context
window, retries transient failures (each retry an event), records usage on the conversation's Meter (counting
it with tiktoken when the backend reports none), and makes a model's tool calls safe to use.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from autogen_core import CancellationToken, FunctionCall
from autogen_core.models import (
    ChatCompletionClient,
    CreateResult,
    FunctionExecutionResultMessage,
    LLMMessage,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import Tool, ToolSchema

from ....errors import ContextOverflowError, ModelStringError
from ....models import (
    DEFAULT_REPLY_CAP,
    BudgetExceeded,
    Cadence,
    CallFailure,
    CallRecord,
    Meter,
    Retry,
    cost_usd,
    count_completion,
    count_messages,
    count_text,
    parse_model,
    reply_cap_args,
    server_overflow,
    transient,
)
from .limits import window_of
from .shape import shape

STREAMS = Cadence()
"""The model calls streaming in this process: how often each passes its text on."""


def _prompt_estimate(messages: Sequence[LLMMessage], tools: Sequence[Any], extra: Mapping[str, Any]) -> int:
    """Prompt tokens counted with tiktoken, the JSON schema a constrained answer must follow included."""
    schema = extra.get("response_format")
    return count_messages(messages, tools) + (count_text(json.dumps(schema, default=str)) if schema else 0)


_CALL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,80}")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _safe_name(name: object) -> str:
    """A tool name a model made up, cut to something every screen, store and model API can carry."""
    text = name if isinstance(name, str) else str(name)
    if _TOOL_NAME.fullmatch(text):
        return text
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64] or "unnamed"


def own_calls(result: CreateResult, ids: set[str], *, text_only: bool = False) -> CreateResult:
    """A model's reply with its tool calls made safe to use, before anything sees them.

    Ids are keys (approvals, the chat's tool steps, AutoGen pairs results with calls by id), so an id
    the model repeats (within the reply or from earlier), leaves out or shapes oddly is replaced by a
    fresh one of parley's own. Tool names are cut to a safe form. Calls where only text is expected (the
    selector's pick, the answer after tool use) become the text they are, instead of breaking the caller."""
    if not isinstance(result.content, list):
        return result
    if text_only:
        said = "; ".join(f"{_safe_name(c.name)}({str(c.arguments)[:200]})" for c in result.content)
        return result.model_copy(
            update={
                "content": f"(asked to call a tool, but none is offered here: {said})",
                "finish_reason": "stop",
            }
        )
    calls = []
    for call in result.content:
        call_id = (
            call.id
            if isinstance(call.id, str) and _CALL_ID.fullmatch(call.id) and call.id not in ids
            else f"call_{uuid.uuid4().hex}"
        )
        ids.add(call_id)
        arguments = (
            call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments, default=str)
        )
        calls.append(FunctionCall(id=call_id, name=_safe_name(call.name), arguments=arguments))
    return result.model_copy(update={"content": calls})


def _empty(result: CreateResult) -> bool:
    """No text and no tool call."""
    content = result.content
    return not content if isinstance(content, list) else not str(content or "").strip()


def _answers_tools(messages: Sequence[LLMMessage]) -> bool:
    """A request that ends with tool results asks the model to answer them: AutoGen's reflection on tool use."""
    return bool(messages) and isinstance(messages[-1], FunctionExecutionResultMessage)


def _is_openai_family(client: ChatCompletionClient) -> bool:
    if "autogen_ext.models.openai" not in sys.modules:
        return (
            False  # not imported, so no such client exists (and importing it would cost a third of a second)
        )
    from autogen_ext.models.openai import BaseOpenAIChatCompletionClient

    return isinstance(client, BaseOpenAIChatCompletionClient)


class MeteredClient(ChatCompletionClient):
    """Wraps any client: refuses calls past the budget, records usage (counting it when missing)."""

    def __init__(
        self,
        inner: ChatCompletionClient,
        meter: Meter,
        *,
        source: str,
        model: str,
        max_reply_tokens: int | None = None,
        context_tokens: int | None = None,
    ) -> None:
        self.inner = inner
        self.meter = meter
        self.source = source
        self.model = model
        self.max_reply_tokens = max_reply_tokens
        """Longest answer per call, in tokens (None: the backend's own default)."""
        self.context_tokens = context_tokens
        """The model's context window as the team file states it (None: the backend's, where known)."""
        try:
            ref = parse_model(model)
            self.backend, self._name, self._base_url = ref.backend, ref.name, ref.base_url
        except ModelStringError:  # a client made by hand around some other model
            self.backend, self._name, self._base_url = "unknown", model, None

    @property
    def reply_cap(self) -> int:
        """The longest answer of one call, in tokens, as this backend will be asked for it."""
        cap = self.max_reply_tokens or DEFAULT_REPLY_CAP
        ceiling = getattr(self.inner, "reply_ceiling", None)  # the embedded model's own, lower one
        return min(cap, ceiling) if isinstance(ceiling, int) and ceiling > 0 else cap

    async def _prepare(
        self,
        messages: Sequence[LLMMessage],
        tools: Sequence[Any],
        extra: Mapping[str, Any],
    ) -> tuple[list[LLMMessage], dict[str, Any]]:
        """The request as this backend takes it (see _shape), with the reply cap; refused here, before anything
        is sent, when the prompt and the longest reply cannot fit the model's context window."""
        shaped = shape(messages, self.backend)
        cap = self.reply_cap
        extra = reply_cap_args(self.backend, self._name, cap, extra)
        prompt = _prompt_estimate(shaped, tools, extra)
        window = self.context_tokens or await window_of(
            self.backend, self._name, self._base_url, self.inner, prompt + cap
        )
        if window and prompt + cap > window:
            overflow = ContextOverflowError(self.source, prompt, window, reply_cap=cap)
            self._failed(overflow)
            raise overflow
        return shaped, extra

    def _raise_overflow(self, exc: BaseException) -> None:
        """A server's own "the prompt does not fit" answer becomes the same clear error (never retried)."""
        found = server_overflow(exc)
        if found is None:
            return
        prompt, window, said = found
        over = ContextOverflowError(self.source, prompt, window, said="" if prompt and window else said)
        self._failed(over)
        raise over from exc

    def _empty_again(self, result: CreateResult, asked_again: bool) -> bool:
        """An empty answer (no text, no tool call) is said, and asked for once more (True); not a second time."""
        if asked_again or not _empty(result):
            return False
        note = Retry(
            source=self.source,
            model=self.model,
            error="the model answered nothing",
            attempt=1,
            attempts=2,
            delay_s=0.0,
            empty=True,
        )
        for listener in list(self.meter.retry_listeners):
            listener(note)
        return True

    def _check_budget(self, token: CancellationToken | None) -> None:
        if token is not None and token.is_cancelled():
            # A stopped or abandoned team may still try: no model call once its run is cancelled.
            raise asyncio.CancelledError(f"{self.source}: the run was cancelled; no model call made")
        if self.meter.exceeded():
            raise BudgetExceeded(
                f"token budget of {self.meter.budget} spent ({self.meter.total_tokens} used); "
                f"{self.source}'s model call was not made"
            )

    def _record(
        self,
        messages: Sequence[LLMMessage],
        tools: Sequence[Any],
        result: CreateResult,
        t0: float,
        extra: Mapping[str, Any],
        tool_choice: Any = "auto",
    ) -> CreateResult:
        usage = result.usage
        estimated = not (usage and (usage.prompt_tokens or usage.completion_tokens))
        if estimated:
            usage = RequestUsage(
                prompt_tokens=_prompt_estimate(messages, tools, extra),
                completion_tokens=count_completion(result.content),
            )
            result = result.model_copy(update={"usage": usage})
        self._note(
            usage.prompt_tokens,
            usage.completion_tokens,
            estimated,
            t0,
            reflection=_answers_tools(messages),
            finish_reason=str(result.finish_reason),
        )
        # Every backend's reply passes here (streamed or not): the one place a model's tool calls are checked.
        return own_calls(
            result, self.meter.call_ids, text_only=tool_choice == "none" or self.source == "selector"
        )

    def _note(
        self,
        prompt: int,
        completion: int,
        estimated: bool,
        t0: float,
        *,
        cancelled: bool = False,
        reflection: bool = False,
        finish_reason: str | None = None,
    ) -> None:
        self.meter.record(
            CallRecord(
                source=self.source,
                model=self.model,
                prompt_tokens=prompt,
                completion_tokens=completion,
                estimated=estimated,
                cancelled=cancelled,
                reflection=reflection,
                cost_usd=cost_usd(self.model, prompt, completion),
                latency_s=time.perf_counter() - t0,
                finish_reason=finish_reason,
            )
        )

    def _cut_short(
        self,
        messages: Sequence[LLMMessage],
        tools: Sequence[Any],
        extra: Mapping[str, Any],
        streamed: Sequence[str],
        t0: float,
    ) -> None:
        """A call cancelled after its request went out still cost its prompt and what was streamed: estimate it."""
        self._note(
            _prompt_estimate(messages, tools, extra),
            count_completion("".join(streamed)),
            True,
            t0,
            cancelled=True,
            reflection=_answers_tools(messages),
        )

    async def _retrying(self, exc: BaseException, attempt: int, token: CancellationToken | None) -> bool:
        """Wait before the next attempt if `exc` is transient and attempts remain; False to give up."""
        meter = self.meter
        if not transient(exc) or attempt > meter.retries or (token is not None and token.is_cancelled()):
            return False
        delay = meter.delay(attempt, exc)
        note = Retry(
            source=self.source,
            model=self.model,
            error=f"{type(exc).__name__}: {exc}"[:300],
            attempt=attempt,
            attempts=meter.retries + 1,
            delay_s=delay,
        )
        for listener in list(meter.retry_listeners):
            listener(note)
        pause = asyncio.ensure_future(asyncio.sleep(delay))
        if token is not None:
            token.link_future(pause)
        await pause
        return True

    def _failed(self, exc: BaseException) -> None:
        self.meter.failures.append(
            CallFailure(
                source=self.source,
                model=self.model,
                error_type=type(exc).__name__,
                message=str(exc),
                error=exc,
            )
        )

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        self._check_budget(cancellation_token)
        messages, extra_create_args = await self._prepare(messages, tools, extra_create_args)
        attempt = 1
        asked_again = False
        while True:
            self._check_budget(cancellation_token)
            t0 = time.perf_counter()
            try:
                result = await self.inner.create(
                    messages,
                    tools=tools,
                    tool_choice=tool_choice,
                    json_output=json_output,
                    extra_create_args=extra_create_args,
                    cancellation_token=cancellation_token,
                )
            except asyncio.CancelledError:
                self._cut_short(messages, tools, extra_create_args, (), t0)
                raise
            except Exception as exc:
                self._raise_overflow(exc)
                if await self._retrying(exc, attempt, cancellation_token):
                    attempt += 1
                    continue
                self._failed(exc)
                raise
            result = self._record(messages, tools, result, t0, extra_create_args, tool_choice)
            if self._empty_again(result, asked_again):
                asked_again = True
                continue
            return result

    async def create_stream(  # type: ignore[override]
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> AsyncGenerator[str | CreateResult, None]:
        self._check_budget(cancellation_token)
        messages, extra_create_args = await self._prepare(messages, tools, extra_create_args)
        if _is_openai_family(self.inner) and "stream_options" not in extra_create_args:
            # Ask for usage on the stream; as a client default it would also go on non-streamed calls,
            # which strict servers (vLLM) reject.
            extra_create_args = {**extra_create_args, "stream_options": {"include_usage": True}}
        attempt = 1
        asked_again = again = False
        while True:
            self._check_budget(cancellation_token)
            t0 = time.perf_counter()
            started = recorded = again = False
            streamed: list[str] = []
            held: list[str] = []
            shown_at = t0
            live = STREAMS.begin()
            try:
                async for item in self.inner.create_stream(
                    messages,
                    tools=tools,
                    tool_choice=tool_choice,
                    json_output=json_output,
                    extra_create_args=extra_create_args,
                    cancellation_token=cancellation_token,
                ):
                    started = True
                    if isinstance(item, CreateResult):
                        recorded = True
                        result = self._record(messages, tools, item, t0, extra_create_args, tool_choice)
                        if self._empty_again(result, asked_again):
                            asked_again = again = True  # nothing (or only blanks) was streamed: ask once more
                            continue
                        if held:
                            yield "".join(held)
                        yield result
                        continue
                    streamed.append(item)
                    held.append(item)
                    # At most one update per STREAM_EVERY_S (less often while this process streams many
                    # replies: parley.models._cadence), counted from the call's start: every piece is an event
                    # that crosses the run and the web socket, and a fast model sends hundreds a second that no
                    # reader can tell apart. A first piece that comes later than that (a model's usual time to
                    # first token) is passed on at once; a reply that comes whole within it is one piece.
                    now = time.perf_counter()
                    if STREAMS.due(now, t0, shown_at):
                        yield "".join(held)
                        held.clear()
                        shown_at = now
                if again:
                    continue
                return
            except (asyncio.CancelledError, GeneratorExit):
                if (
                    not recorded
                ):  # interrupted, stopped or timed out mid-call: the backend still saw the prompt
                    self._cut_short(messages, tools, extra_create_args, streamed, t0)
                raise
            except Exception as exc:
                self._raise_overflow(exc)
                # Text already shown cannot be taken back: only a stream that never started is retried.
                if not started and await self._retrying(exc, attempt, cancellation_token):
                    attempt += 1
                    continue
                self._failed(exc)
                raise
            finally:
                STREAMS.end(live)

    async def close(self) -> None:
        await self.inner.close()

    def actual_usage(self) -> RequestUsage:
        return self.inner.actual_usage()

    def total_usage(self) -> RequestUsage:
        return self.inner.total_usage()

    def count_tokens(self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()) -> int:
        return count_messages(messages, tools)

    def remaining_tokens(
        self, messages: Sequence[LLMMessage], *, tools: Sequence[Tool | ToolSchema] = ()
    ) -> int:
        return self.inner.remaining_tokens(messages, tools=tools)

    @property
    def capabilities(self) -> Any:
        return self.inner.capabilities

    @property
    def model_info(self) -> ModelInfo:
        return self.inner.model_info
