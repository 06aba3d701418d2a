"""Model strings and the clients behind them, every one metered."""

from __future__ import annotations

import os
from pathlib import Path

from autogen_core.models import ChatCompletionClient

from ..errors import ConfigError
from ._meter import BudgetExceeded, CallFailure, CallRecord, Meter, MeteredClient, Retry, transient
from ._pricing import cost_usd, price_of
from ._ref import BACKENDS, ModelRef, parse_model
from ._scripted import SELECTOR, ScriptedModel

__all__ = [
    "BACKENDS",
    "SELECTOR",
    "BudgetExceeded",
    "CallFailure",
    "CallRecord",
    "Meter",
    "MeteredClient",
    "ModelPool",
    "ModelRef",
    "Retry",
    "ScriptedModel",
    "cost_usd",
    "parse_model",
    "price_of",
    "reflects",
    "scripted_via",
    "transient",
]


class ModelPool:
    """Builds the clients of one conversation: one per role (and the selector), all on one meter."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self._scripts: dict[str, ScriptedModel] = {}
        self._shared: dict[str, ChatCompletionClient] = {}
        self._replayed: list[tuple[ChatCompletionClient, str]] = []

    def script(self, path: str) -> ScriptedModel:
        key = str(Path(path).resolve())
        if key not in self._scripts:
            self._scripts[key] = ScriptedModel.load(path)
        return self._scripts[key]

    @property
    def scripts(self) -> list[ScriptedModel]:
        return list(self._scripts.values())

    def client(self, model: str, who: str, *, max_reply_tokens: int | None = None,
               context_tokens: int | None = None) -> MeteredClient:
        """A metered client of `model` for role `who` (or SELECTOR). Raises ConfigError on bad input.
        `max_reply_tokens` caps each answer; `context_tokens` states the model's context window where
        the backend cannot tell it."""
        ref = parse_model(model)
        via = scripted_via() if ref.backend == "scripted" else None
        if via is not None:
            from ._replay import replay_client

            inner, token = replay_client(self.script(ref.name), who, via)
            self._replayed.append((inner, token))
        elif ref.backend == "scripted":
            inner = self.script(ref.name).client(who)
        else:
            key = str(ref)
            if key not in self._shared:
                self._shared[key] = _build(ref)
            inner = self._shared[key]
        metered = MeteredClient(inner, self.meter, source="selector" if who == SELECTOR else who, model=str(ref),
                                max_reply_tokens=max_reply_tokens, context_tokens=context_tokens)
        if via is not None:
            metered.backend = via  # requests shaped and capped as that API takes them (the model string stays)
        return metered

    async def close(self) -> None:
        for client in self._shared.values():
            await client.close()
        self._shared.clear()
        if self._replayed:
            from ._replay import replay_server

            for client, token in self._replayed:
                await client.close()
                replay_server().forget(token)
            self._replayed.clear()


def supports_tools(model: str) -> bool:
    """Whether the model can emit tool calls (the embedded model cannot)."""
    return parse_model(model).backend != "local"


VIA_ENV = "PARLEY_SCRIPTED_VIA"


def scripted_via() -> str | None:
    """Which wire protocol scripted roles speak (`PARLEY_SCRIPTED_VIA`): None (default, `direct`) answers in
    process; `openai` or `anthropic` serves the script over loopback HTTP to that backend's real client, so
    a script drives the production path (SDK, streamed tool calls, reflection on tool use)."""
    value = os.environ.get(VIA_ENV, "").strip().lower()
    if value in ("", "direct"):
        return None
    if value in ("openai", "anthropic"):
        return value
    raise ConfigError(f"{VIA_ENV}={value!r} is not a protocol: use openai, anthropic or direct (the default)")


def reflects(model: str) -> bool:
    """Whether a role on this model summarises its tools' results in a second model call (AutoGen's
    reflect_on_tool_use). A scripted reply is one model call, so the scripted model does not, unless it is
    served over HTTP (`scripted_via`): then it runs the production path, reflection included."""
    return parse_model(model).backend != "scripted" or scripted_via() is not None


def uses_json_schema(model: str) -> bool:
    """Whether the selector should constrain this model's answer with a JSON schema."""
    backend = parse_model(model).backend
    if backend == "scripted":
        return scripted_via() == "openai"  # served as OpenAI's API, answered as its schema says
    return backend in ("local", "compatible", "openai", "azure")


def _build(ref: ModelRef) -> ChatCompletionClient:
    if ref.backend == "local":
        from ._local import local_client

        return local_client()  # type: ignore[no-any-return]
    from ._backends import build_remote

    return build_remote(ref)
