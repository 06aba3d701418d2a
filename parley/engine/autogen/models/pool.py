"""The clients of one conversation, all on one meter, and what each model can do."""

from __future__ import annotations

from pathlib import Path

from autogen_core.models import ChatCompletionClient

from ....errors import ConfigError
from ....models import (
    FUNCTION,
    SELECTOR,
    Capabilities,
    FunctionModel,
    Meter,
    ModelRef,
    ScriptedModel,
    Traits,
    capabilities_from,
    parse_model,
    scripted_via,
)
from .metered import MeteredClient
from .scripted import ScriptedClient

ModelLike = str | FunctionModel


def capabilities_of(client: ChatCompletionClient) -> Capabilities:
    """What the model behind `client` can do: from its model info, and the traits a client of parley's own
    states (see parley.models.Traits)."""
    inner = client.inner if isinstance(client, MeteredClient) else client
    traits = getattr(inner, "traits", None)
    return capabilities_from(
        inner.model_info, traits if isinstance(traits, Traits) else Traits(), openai_api=_openai_api(inner)
    )


def _openai_api(client: ChatCompletionClient) -> bool:
    """Whether the client speaks OpenAI's chat completions (which take `response_format`)."""
    return any(c.__module__.startswith("autogen_ext.models.openai") for c in type(client).__mro__)


class ModelPool:
    """Builds the clients of one conversation: one per role (and the selector), all on one meter. A model is a
    model string or a FunctionModel (named `function:NAME` in strings once the pool has it)."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self._scripts: dict[str, ScriptedModel] = {}
        self._functions: dict[str, FunctionModel] = {}
        self._shared: dict[str, ChatCompletionClient] = {}
        self._replayed: list[tuple[ChatCompletionClient, str]] = []
        self._capabilities: dict[str, Capabilities] = {}

    def script(self, path: str) -> ScriptedModel:
        key = str(Path(path).resolve())
        if key not in self._scripts:
            self._scripts[key] = ScriptedModel.load(path)
        return self._scripts[key]

    @property
    def scripts(self) -> list[ScriptedModel]:
        return list(self._scripts.values())

    def name_of(self, model: ModelLike) -> str:
        """The model string of `model`: a FunctionModel is registered under `function:NAME` (one function per
        name in a pool)."""
        if isinstance(model, str):
            return model
        key = str(model)
        known = self._functions.setdefault(model.name, model)
        if known is not model:
            raise ConfigError(f"two function models are named {model.name!r}: give them different names")
        return key

    def function(self, name: str) -> FunctionModel:
        found = self._functions.get(name)
        if found is None:
            raise ConfigError(
                f"'{FUNCTION}:{name}' names a function model this conversation was not given: pass "
                "the FunctionModel itself as the model"
            )
        return found

    def client(
        self,
        model: ModelLike,
        who: str,
        *,
        max_reply_tokens: int | None = None,
        context_tokens: int | None = None,
    ) -> MeteredClient:
        """A metered client of `model` for role `who` (or SELECTOR). Raises ConfigError on bad input.
        `max_reply_tokens` caps each answer; `context_tokens` states the model's context window where
        the backend cannot tell it."""
        ref = parse_model(self.name_of(model))
        inner, via = self._inner(ref, who)
        metered = MeteredClient(
            inner,
            self.meter,
            source="selector" if who == SELECTOR else who,
            model=str(ref),
            max_reply_tokens=max_reply_tokens,
            context_tokens=context_tokens,
        )
        if via is not None:
            metered.backend = (
                via  # requests shaped and capped as that API takes them (the model string stays)
            )
        self._capabilities.setdefault(str(ref), capabilities_of(inner))
        return metered

    def capabilities(self, model: ModelLike) -> Capabilities:
        """What `model` can do, from the model info of its client (built now if none is yet)."""
        ref = parse_model(self.name_of(model))
        key = str(ref)
        if key not in self._capabilities and ref.backend == "local" and key not in self._shared:
            from .local import local_capabilities

            self._capabilities[key] = local_capabilities()  # known without starting the embedded model
        if key not in self._capabilities:
            # A client that is never called: it takes no reply from a script.
            self._capabilities[key] = capabilities_of(self._inner(ref, "")[0])
        return self._capabilities[key]

    def _inner(self, ref: ModelRef, who: str) -> tuple[ChatCompletionClient, str | None]:
        if ref.backend == "scripted":
            via = scripted_via()
            if via is None:
                return ScriptedClient(self.script(ref.name), who), None
            from .replay import replay_client

            inner, token = replay_client(self.script(ref.name), who, via)
            self._replayed.append((inner, token))
            return inner, via
        if ref.backend == FUNCTION:
            from .function import FunctionClient

            return FunctionClient(self.function(ref.name), who), None
        key = str(ref)
        if key not in self._shared:
            self._shared[key] = _build(ref)
        return self._shared[key], None

    async def choose(
        self, model: ModelLike, who: str, *, system: str, user: str, choices: list[str], field: str
    ) -> str | None:
        """Ask `model` (metered as `who`) to pick one of `choices`: bound to a JSON schema where the model takes
        one, parsed from its text otherwise; None when the answer names none of them."""
        from autogen_core.models import SystemMessage, UserMessage

        from ..choose import choose

        prompt = [SystemMessage(content=system), UserMessage(content=user, source="user")]
        json_schema = self.capabilities(model).json_schema
        return await choose(self.client(model, who), prompt, choices, field=field, json_schema=json_schema)

    async def text(self, model: ModelLike, who: str, *, system: str, user: str) -> str:
        """One free-text answer of `model` (metered as `who`) to `user`; empty when it answers with anything
        but text (a tool call)."""
        from autogen_core.models import SystemMessage, UserMessage

        prompt = [SystemMessage(content=system), UserMessage(content=user, source="user")]
        result = await self.client(model, who).create(prompt)
        return result.content if isinstance(result.content, str) else ""

    async def close(self) -> None:
        for client in self._shared.values():
            await client.close()
        self._shared.clear()
        if self._replayed:
            from .replay import replay_server

            for client, token in self._replayed:
                await client.close()
                replay_server().forget(token)
            self._replayed.clear()


def _build(ref: ModelRef) -> ChatCompletionClient:
    if ref.backend == "local":
        from .local import local_client

        return local_client()
    from .backends import build_remote

    return build_remote(ref)
