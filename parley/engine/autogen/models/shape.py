"""Every model request shaped so that every server takes it, in one place (the meter applies it to every call).

A group chat produces message lists that strict servers refuse:

- one role speaking twice in a row leaves two of its own (assistant) messages back to back, and its next call
  ends with its own message. llama.cpp's server (and LM Studio, LiteLLM in front of one) treats one trailing
  assistant message as a prefix to continue and refuses two (`400 Cannot have 2 or more assistant messages at
  the end of the list`); Anthropic treats a trailing assistant message as the start of its answer;
- Anthropic's Messages API and the chat templates of small local models want user and assistant turns to
  alternate, and one system prompt at the start;
- the `name` field that says which role spoke is sent by autogen-ext's OpenAI client only; its Anthropic and
  Ollama clients drop it, and most OpenAI-compatible servers ignore it: there the speaker is said in the text.

What is never touched: an assistant message with tool calls and the tool results that answer it (their pairing
is what the APIs check), a request that ends in tool results (AutoGen's reflection call after a tool call: the
model answers the results), images in a user message.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from autogen_core import FunctionCall, Image
from autogen_core.models import AssistantMessage, LLMMessage, SystemMessage, UserMessage

HUMAN = "user"
"""The source of human messages (the task, interjections): said without a name prefix."""


@dataclass(frozen=True)
class Profile:
    """What one backend's API takes."""

    names_in_text: bool
    """The API (or autogen-ext's client for it) carries no speaker name: put `name: ` before other roles' text
    and merge back-to-back user messages into one."""
    one_system: bool
    """Only one system prompt, at the start: later system messages become user-role text."""
    system_last_ok: bool
    """A request may end with a system message (OpenAI answers it; the others need a user message)."""
    object_arguments: bool = False
    """Earlier tool calls must carry a JSON object as arguments (autogen-ext's Anthropic client builds a
    ToolUseBlock from them, and a model-made `[1, 2]` would end every later call of the role)."""


OPENAI = Profile(names_in_text=False, one_system=False, system_last_ok=True)
NAMELESS = Profile(names_in_text=True, one_system=False, system_last_ok=False)
STRICT = Profile(names_in_text=True, one_system=True, system_last_ok=False)
ANTHROPIC = Profile(names_in_text=True, one_system=True, system_last_ok=False, object_arguments=True)

PROFILES = {
    # autogen-ext's OpenAI client sends `name` (include_name_in_message): OpenAI and Azure read it.
    "openai": OPENAI,
    "azure": OPENAI,
    # parley's own model follows the OpenAI client, so that the scripted path is the production path.
    "scripted": OPENAI,
    "function": OPENAI,  # a function model reads each message's speaker from parley's own message type
    # llama.cpp, vLLM, LM Studio, Ollama's /v1: the chat template never shows `name` to the model.
    "compatible": NAMELESS,
    "ollama": NAMELESS,  # autogen-ext's Ollama client drops `name` (its own TODO says so)
    "anthropic": ANTHROPIC,  # one system prompt (autogen-ext merges only adjacent ones, and raises otherwise)
    "local": STRICT,  # SmolLM2's template, and LOCAL_INFO's multiple_system_messages=False
}


def profile_of(backend: str) -> Profile:
    return PROFILES.get(backend, NAMELESS)


def hand_back(role: str) -> UserMessage:
    """The short user-role message that gives the turn back to a role whose own message ends the history.
    Without it llama.cpp continues the role's last message (or refuses two), Anthropic takes it as the start
    of its answer; a short line costs a few tokens and reads naturally to every model."""
    return UserMessage(content=f"(Your turn again, {role}: go on.)", source=HUMAN)


def shape(messages: Sequence[LLMMessage], backend: str) -> list[LLMMessage]:
    """`messages` as `backend`'s API takes them (see the module's doc). Returns new messages; never mutates."""
    prof = profile_of(backend)
    out: list[LLMMessage] = []
    for m in messages:
        _add(out, _as_taken(m, prof, out), prof)
    return _ended(out, prof)


def _as_taken(m: LLMMessage, prof: Profile, before: Sequence[LLMMessage]) -> LLMMessage:
    """One message as the API takes it on its own: a late system message as user text where only one system
    prompt is allowed, the speaker named in the text, tool-call arguments as objects."""
    if (
        isinstance(m, SystemMessage)
        and prof.one_system
        and any(not isinstance(p, SystemMessage) for p in before)
    ):
        return UserMessage(content=m.content, source=HUMAN)  # a summary or note inserted mid-history
    if isinstance(m, UserMessage) and prof.names_in_text:
        return _named(m)
    if isinstance(m, AssistantMessage) and isinstance(m.content, list) and prof.object_arguments:
        return _object_arguments(m)
    return m


def _add(out: list[LLMMessage], m: LLMMessage, prof: Profile) -> None:
    """Append `m`, merged into the previous message when the API refuses the two back to back."""
    prev = out[-1] if out else None
    if isinstance(m, AssistantMessage) and isinstance(prev, AssistantMessage) and _text_only(m, prev):
        out[-1] = prev.model_copy(update={"content": f"{prev.content}\n\n{m.content}"})
    elif isinstance(m, UserMessage) and isinstance(prev, UserMessage) and prof.names_in_text:
        source = HUMAN if HUMAN in (prev.source, m.source) else prev.source
        out[-1] = prev.model_copy(update={"content": _joined(prev.content, m.content), "source": source})
    else:
        out.append(m)


def _ended(out: list[LLMMessage], prof: Profile) -> list[LLMMessage]:
    """The request ending as the API needs it: with a user message after the role's own text, and after a system
    message where the API cannot answer one."""
    if not out:
        return out
    last = out[-1]
    if isinstance(last, AssistantMessage) and isinstance(last.content, str):
        out.append(hand_back(last.source))
    elif isinstance(last, SystemMessage) and not prof.system_last_ok:
        if len(out) > 1:
            out[-1] = UserMessage(content=last.content, source=HUMAN)
        else:
            out.append(UserMessage(content="(Answer as the instructions above say.)", source=HUMAN))
    return out


def _object_arguments(m: AssistantMessage) -> AssistantMessage:
    """A tool call's arguments as a JSON object: others (parley refused the call already, and said so in its
    result) are kept as text under `arguments`. Real Anthropic always sends objects; proxies need not."""
    calls = []
    for call in m.content:
        assert isinstance(call, FunctionCall)
        try:
            ok = isinstance(json.loads(call.arguments), dict)
        except (ValueError, TypeError, RecursionError):
            ok = False
        calls.append(
            call
            if ok
            else FunctionCall(id=call.id, name=call.name, arguments=json.dumps({"arguments": call.arguments}))
        )
    return m.model_copy(update={"content": calls})


def _text_only(*messages: AssistantMessage) -> bool:
    return all(isinstance(m.content, str) for m in messages)


def _named(m: UserMessage) -> UserMessage:
    """Another role's message with its speaker said in the text (`analyst: ...`); the human's stays as written."""
    if m.source == HUMAN or not m.source:
        return m
    prefix = f"{m.source}: "
    if isinstance(m.content, str):
        return m if m.content.startswith(prefix) else m.model_copy(update={"content": prefix + m.content})
    parts = list(m.content)
    first = next((i for i, p in enumerate(parts) if isinstance(p, str)), None)
    if first is None:
        parts.insert(0, prefix.rstrip())
    elif not parts[first].startswith(prefix):  # type: ignore[union-attr]
        parts[first] = prefix + parts[first]  # type: ignore[operator]
    return m.model_copy(update={"content": parts})


def _joined(a: str | list[str | Image], b: str | list[str | Image]) -> str | list[str | Image]:
    if isinstance(a, str) and isinstance(b, str):
        return f"{a}\n\n{b}"
    return [*([a] if isinstance(a, str) else a), *([b] if isinstance(b, str) else b)]
