"""The scripted model: deterministic replies per role, for demos, evaluations and tests.

```yaml
roles:
  analyst:
    - "Q3 revenue was 4.2M"                 # a text reply
    - tool: sql_query                        # a tool call
      args: {query: "SELECT SUM(revenue) FROM sales"}
    - json: {verdict: approve}               # a reply serialised as JSON text
    - {text: "Draft one: ...", hold: true}   # streams its first word, then waits for a human (see HeldReply)
    - calls:                                 # several tool calls at once (run concurrently)
        - {tool: researcher, args: {task: "Find the Q3 figures"}}
        - {tool: writer, args: {task: "Draft the intro"}}
selector: [analyst, reviewer]                # the selector's picks, in order
summariser: ["Q3 figures agreed; the report is next"]  # optional: the running summaries of `context: {summary: true}`
delay_s: 1.5                                 # optional: seconds per reply, streamed in chunks
role_delay_s: {writer: 20}                   # optional: a role's own seconds per reply, instead of delay_s
```
Each model call of a role takes that role's next reply. Without a `summariser:` list, running summaries
are extractive: the first sentence of each summarised turn. A role that runs past the end of its
list is an error naming the role and the turn, never a silent repeat. A reply abandoned by an
interrupt counts as used.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .._yaml import did_you_mean, load_located, pydantic_problems
from ..errors import FileProblem, ScriptExhaustedError, TeamFileError

SELECTOR = "the selector"
SUMMARISER = "summariser"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ToolReply(_Strict):
    tool: str
    """Name of the tool to call."""
    args: dict[str, Any] = Field(default_factory=dict)
    """Arguments, as the model would send them."""
    raw_args: str | None = None
    """Instead of `args`: the arguments' text exactly as sent, even when it is not JSON (a hostile model)."""
    id: str | None = None
    """The call's id as the model sends it (a fresh one by default); lets a script repeat an id."""


class CallsReply(_Strict):
    calls: Annotated[list[ToolReply], Field(min_length=1)]
    """Several tool calls in one reply; the agent runs them concurrently."""


class JsonReply(_Strict):
    json_: Any = Field(alias="json")
    """Any value; sent as its JSON text."""


class HeldReply(_Strict):
    """A text reply that streams its first word, then holds until a human message reaches the conversation
    (typed, or an Interrupt) or the turn is cut short (Stop), then streams the rest. A demo shows interjecting
    and stopping without racing a clock, and so do the browser tests. Outside a run nobody can speak: no hold."""

    text: Annotated[str, Field(min_length=1)]
    hold: Literal[True]


Reply = str | ToolReply | CallsReply | JsonReply | HeldReply


def reply_text(reply: str | JsonReply | HeldReply) -> str:
    """The text a text reply sends (a JSON reply as its JSON text)."""
    if isinstance(reply, JsonReply):
        return json.dumps(reply.json_)
    return reply.text if isinstance(reply, HeldReply) else reply


class ScriptFile(_Strict):
    roles: dict[str, list[Reply]] = Field(default_factory=dict)
    selector: list[str] = Field(default_factory=list)
    summariser: list[str] | None = None
    delay_s: Annotated[float, Field(ge=0)] = 0.0
    role_delay_s: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)

    def delay_for(self, role: str) -> float:
        """Seconds each reply of `role` takes to stream."""
        return self.role_delay_s.get(role, self.delay_s)


@dataclass
class ScriptCall:
    """What a scripted role was sent, for tests and demos that inspect prompts."""

    who: str
    messages: list[Any]
    """The request's messages, as the engine's client was given them."""


@dataclass
class ScriptedModel:
    """A loaded script and its cursors. One instance serves every role of a conversation."""

    path: str
    script: ScriptFile
    cursors: dict[str, int] = field(default_factory=dict)
    calls: list[ScriptCall] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | Path) -> ScriptedModel:
        located = load_located(Path(path), str(path))
        if not isinstance(located.data, dict):
            raise TeamFileError([located.problem((), "a script must be a mapping with roles: and selector:")])
        try:
            script = ScriptFile.model_validate(located.data)
        except ValidationError as exc:
            raise TeamFileError(
                pydantic_problems(
                    located,
                    exc,
                    [
                        "roles",
                        "selector",
                        "summariser",
                        "delay_s",
                        "role_delay_s",
                        "tool",
                        "args",
                        "raw_args",
                        "id",
                        "json",
                        "calls",
                    ],
                )
            ) from None
        return cls(path=str(path), script=script)

    def check_roles(self, roles: Sequence[str], *, picks_are_roles: bool = True) -> None:
        """Refuse a script that names roles the team does not have (and, for a selector, picks that are not roles)."""
        problems = []
        named = [("roles", n) for n in self.script.roles] + [
            ("role_delay_s", n) for n in self.script.role_delay_s
        ]
        for key, name in named:
            if name not in roles:
                problems.append(
                    FileProblem(
                        file=self.path,
                        line=None,
                        path=f"{key}.{name}",
                        message=f"no role '{name}' in this team{did_you_mean(name, roles)} (roles: {', '.join(roles)})",
                    )
                )
        for i, pick in enumerate(self.script.selector):
            if picks_are_roles and pick not in roles:
                problems.append(
                    FileProblem(
                        file=self.path,
                        line=None,
                        path=f"selector[{i}]",
                        message=f"no role '{pick}' in this team{did_you_mean(pick, roles)}",
                    )
                )
        if problems:
            raise TeamFileError(problems)

    def next_reply(self, who: str, messages: Sequence[Any] = ()) -> Reply:
        if who == SUMMARISER and self.script.summariser is None:
            return _extractive(messages)
        replies: Sequence[Reply] = (
            self.script.selector
            if who == SELECTOR
            else self.script.summariser or []
            if who == SUMMARISER
            else self.script.roles.get(who, [])
        )
        i = self.cursors.get(who, 0)
        if i >= len(replies):
            raise ScriptExhaustedError(self.path, who, i + 1, len(replies))
        self.cursors[who] = i + 1
        return replies[i]


def _extractive(messages: Sequence[Any]) -> str:
    """A deterministic summary of a summariser prompt: the summary so far plus each new turn's first sentence."""
    prompt = getattr(messages[-1], "content", "") if messages else ""
    if not isinstance(prompt, str):
        return ""
    earlier = re.search(r"Summary so far:\n(.*?)\n\nNew turns:", prompt, re.S)
    parts = [earlier.group(1)] if earlier and earlier.group(1) != "(none)" else []
    for line in prompt.splitlines():
        turn = re.match(r"\[([^\]]+)\] (.*)", line)
        if turn:
            first = re.split(r"(?<=[.!?])\s", turn.group(2), maxsplit=1)[0]
            parts.append(f"{turn.group(1)}: {first}")
    return " ".join(parts)
