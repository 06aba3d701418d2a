"""The errors parley raises on purpose; all derive from `ParleyError`.

- `ConfigError` and its subclasses: a mistake in what the user wrote (a team file, a model
  string, a missing key); the message names the fix.
- `UsageError`: a call the API does not allow in the state it was made in (starting a run while
  one runs, answering a question that is not open). `UnknownRequestError` (also a `KeyError`)
  and `RunStateError` (also a `RuntimeError`) keep older `except` clauses working.
- `RunError`: something went wrong while a team was running; it carries the role, the turn and
  the original exception.
- `StoreError`: the conversation store could not be reached, read or written.
- `ContextOverflowError`: a prompt that cannot fit the model's context window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "ContextOverflowError",
    "FileProblem",
    "MissingKeyError",
    "ModelStringError",
    "ParleyError",
    "RunError",
    "RunStateError",
    "ScriptExhaustedError",
    "StoreError",
    "TeamFileError",
    "UnknownRequestError",
    "UnknownTeamError",
    "UsageError",
]


class ParleyError(Exception):
    """Base class of every error parley raises on purpose."""


class ConfigError(ParleyError):
    """A mistake in the user's configuration. The message says what is wrong and how to fix it."""


@dataclass(frozen=True, kw_only=True)
class FileProblem:
    """One problem in a user's file, located by line and by field path."""

    file: str
    """The file, as the user named it."""
    line: int | None
    """1-based line of the offending value, when known."""
    path: str
    """Dotted field path, e.g. ``roles[1].tools[0]``; empty for the whole file."""
    message: str
    """What is wrong, and where possible how to fix it."""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class TeamFileError(ConfigError):
    """A team (or script) file that cannot be used; lists every problem found."""

    def __init__(self, problems: Sequence[FileProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownTeamError(ConfigError):
    """A team name that matches no team file."""


class ModelStringError(ConfigError):
    """A model string that parley cannot parse or build."""


class MissingKeyError(ConfigError):
    """A backend needs a credential that is not set."""

    def __init__(self, backend: str, variable: str, extra: str = "") -> None:
        self.backend = backend
        self.variable = variable
        hint = f" {extra}" if extra else ""
        super().__init__(
            f"No key found for the {backend} backend: set the {variable} environment variable "
            f"(for example `export {variable}=...`).{hint}"
        )


class ScriptExhaustedError(ConfigError):
    """A scripted model was asked for more replies than its script holds."""

    def __init__(self, script: str, who: str, call: int, available: int) -> None:
        self.who = who
        self.call = call
        super().__init__(
            f"{script}: {who} ran past the end of its script at its turn {call} "
            f"(the script gives it {available} {'reply' if available == 1 else 'replies'}); "
            f"add more under {'selector' if who == 'the selector' else f'roles.{who}'}"
        )


class UsageError(ParleyError):
    """A call the API does not allow in the state it was made in. The message says what to do instead."""


class UnknownRequestError(UsageError, KeyError):
    """An approval, question or escalation id that is not open (never asked, or already answered).

    Also a `KeyError`, as these lookups raised before `UsageError` existed.
    """

    def __init__(self, kind: str, request_id: str, open_ids: Sequence[str] = ()) -> None:
        self.kind = kind
        self.request_id = request_id
        self.open_ids = list(open_ids)
        waiting = ", ".join(repr(i) for i in self.open_ids) or "none"
        super().__init__(f"no open {kind} {request_id!r} (open: {waiting})")

    def __str__(self) -> str:  # KeyError's own would quote the whole message
        return str(self.args[0]) if self.args else ""


class RunStateError(UsageError, RuntimeError):
    """A call that does not fit the run's state: a second run while one runs, or acting on a run that ended.

    Also a `RuntimeError`, as these calls raised before `UsageError` existed.
    """


class RunError(ParleyError):
    """A run that failed: where (role, turn) and why (the original exception, also chained as `__cause__`)."""

    def __init__(
        self,
        message: str,
        *,
        role: str | None = None,
        turn: int | None = None,
        original: BaseException | None = None,
        error_type: str | None = None,
    ) -> None:
        self.role = role
        """The role whose turn failed, when one did."""
        self.turn = turn
        """The turn number (1-based) when the run failed, when known."""
        self.original = original
        """The exception that ended the run."""
        self.error_type = error_type or (type(original).__name__ if original is not None else None)
        """The original exception's type name (kept when only the name survives, as in a stored event)."""
        super().__init__(message)
        if original is not None:
            self.__cause__ = original


class StoreError(ParleyError):
    """The database could not be reached, or a read or write failed. Says what and why."""


class ContextOverflowError(ParleyError):
    """A prompt that cannot fit the model's context window. Never retried: the same prompt fails the same way."""

    def __init__(
        self,
        who: str,
        prompt_tokens: int | None,
        window: int | None,
        *,
        reply_cap: int | None = None,
        said: str = "",
    ) -> None:
        self.who = who
        self.prompt_tokens = prompt_tokens
        self.window = window
        self.reply_cap = reply_cap
        if prompt_tokens is not None and window is not None:
            room = f" and its reply may take up to {reply_cap:,}" if reply_cap else ""
            size = f"the prompt of {who} is {prompt_tokens:,} tokens{room}; the model's context window is {window:,} tokens"
        else:
            size = f"the prompt of {who} does not fit the model's context window"
        server = f" (the server said: {said[:300]})" if said else ""
        super().__init__(
            f"{size}{server}: shorten the task, keep fewer turns in the role's view (`context: {{window: N}}`), "
            "lower `max_reply_tokens`, or pick a model with a larger window (`context_tokens` states it)"
        )
