"""The web chat's model picker (Chainlit's chat settings): which models a conversation may run on, the choice of
one, and the refusal of a team its model cannot drive.

The models offered, in this order:
- the conversation's own model (PARLEY_MODEL, or the team's), when it is none of the others;
- the embedded model (`local`), marked as demo quality;
- the models a local Ollama server lists (GET $OLLAMA_HOST/api/tags, default http://127.0.0.1:11434; none
  when no server answers within OLLAMA_TIMEOUT_S);
- a few models of each remote backend whose key is set (OPENAI_API_KEY, ANTHROPIC_API_KEY);
- scripted demos: the `*.yaml` scripts in the folder PARLEY_SCRIPTS names (default `scripts/` in the folder
  the server runs in) that fit the team (a script naming roles the team does not have is left out).

A thread keeps the model it was started on (the store's `model` column): the choice is made before the first
message, and a reopened thread shows its own model. The browser's answer is never trusted: only a model of the
list this server offered can be chosen.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from chainlit.input_widget import Select

from .._model_notes import demo_marked
from ..conversation import Conversation
from ..errors import ConfigError
from ..models import ScriptedModel, parse_model
from ..spec import TeamSpec
from ._format import md_safe

SETTING = "model"
"""The id of the chat setting (and the key of the settings dict Chainlit hands back)."""
SCRIPTS_ENV = "PARLEY_SCRIPTS"
OLLAMA_TIMEOUT_S = 0.5
LOCAL = "local"
REMOTE_DEFAULTS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "openai": ("OPENAI_API_KEY", "OpenAI", ("gpt-4o-mini", "gpt-4.1-mini", "gpt-4o")),
    "anthropic": ("ANTHROPIC_API_KEY", "Anthropic", ("claude-3-5-haiku-latest", "claude-sonnet-4-0")),
}
"""Per remote backend: the key that must be set, its name for people, and a short list of sensible models."""
DEMO_LABEL = "Embedded SmolLM2 135M (demo quality, cannot call tools)"


@dataclass(frozen=True)
class ModelChoice:
    """One model the picker offers."""

    key: str
    """What the browser sees and sends back (a script's file name, never a server path)."""
    model: str
    """The model string the conversation runs on."""
    label: str
    calls_tools: bool
    """Whether it can call tools (the embedded model cannot)."""


def scripts_dir() -> Path:
    return Path(os.environ.get(SCRIPTS_ENV, "").strip() or "scripts")


def _fits(path: Path, team: TeamSpec) -> bool:
    try:
        ScriptedModel.load(path).check_roles(team.role_names, picks_are_roles=team.pattern == "selector")
    except (ConfigError, OSError):
        return False
    return True


def script_choices(team: TeamSpec, folder: Path | None = None) -> list[ModelChoice]:
    """The scripts of the scripts folder that fit `team`, by file name."""
    folder = folder or scripts_dir()
    paths = (
        sorted(p for p in folder.glob("*.y*ml") if p.suffix in (".yaml", ".yml")) if folder.is_dir() else []
    )
    return [
        ModelChoice(f"scripted:{p.name}", f"scripted:{p.resolve()}", f"Script · {p.name}", True)
        for p in paths
        if _fits(p, team)
    ]


def ollama_host() -> str:
    host = os.environ.get("OLLAMA_HOST", "").strip() or "http://127.0.0.1:11434"
    return host if host.startswith(("http://", "https://")) else f"http://{host}"


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS set-up for every probe: httpx makes a new one per client otherwise, reading the certificate bundle
    again (most of the probe's CPU, on every chat start)."""
    return httpx.create_ssl_context(trust_env=False)  # as the clients it serves


async def ollama_models(timeout_s: float = OLLAMA_TIMEOUT_S) -> list[str]:
    """The model names a local Ollama server lists; none when no server answers in time."""
    try:
        async with httpx.AsyncClient(timeout=timeout_s, trust_env=False, verify=_tls()) as client:
            answer = await client.get(f"{ollama_host().rstrip('/')}/api/tags")
            answer.raise_for_status()
            listed = answer.json().get("models") or []
    except (httpx.HTTPError, ValueError, AttributeError):
        return []
    names = [m.get("name") or m.get("model") for m in listed if isinstance(m, dict)]
    return [n for n in names if isinstance(n, str) and n.strip()]


def remote_choices(env: Mapping[str, str] | None = None) -> list[ModelChoice]:
    env = os.environ if env is None else env
    out: list[ModelChoice] = []
    for backend, (key, name, models) in REMOTE_DEFAULTS.items():
        if env.get(key, "").strip():
            out += [ModelChoice(f"{backend}:{m}", f"{backend}:{m}", f"{name} · {m}", True) for m in models]
    return out


def _normal(model: str) -> str:
    """A model string as the picker compares it (a script by its resolved path)."""
    try:
        ref = parse_model(model)
    except ConfigError:
        return model
    if ref.backend == "scripted":
        return f"scripted:{Path(ref.name).resolve()}"
    return str(ref)


def _own(model: str) -> ModelChoice:
    ref = parse_model(model)
    shown = Path(ref.name).name if ref.backend == "scripted" else str(ref)
    return ModelChoice("own", model, f"This server's model · {shown}", ref.backend != LOCAL)


async def available_models(team: TeamSpec, current: str | None = None) -> list[ModelChoice]:
    """Every model the picker offers for `team` (see the module's docstring); `current` is the conversation's."""
    choices = [ModelChoice(LOCAL, LOCAL, DEMO_LABEL, False)]
    choices += [
        ModelChoice(f"ollama:{n}", f"ollama:{n}", f"Ollama · {n}", True) for n in await ollama_models()
    ]
    choices += remote_choices()
    choices += script_choices(team)
    if current and all(_normal(c.model) != _normal(current) for c in choices):
        choices.insert(0, _own(current))
    return choices


def find(choices: Sequence[ModelChoice], model: str) -> ModelChoice | None:
    return next((c for c in choices if _normal(c.model) == _normal(model)), None)


def widgets(choices: Sequence[ModelChoice], current: str | None) -> list[Any]:
    """The chat settings' inputs: one Select of the models, set to `current`."""
    chosen = find(choices, current) if current else None
    return [
        Select(
            id=SETTING,
            label="Model",
            items={c.label: c.key for c in choices},
            initial_value=(chosen or choices[0]).key,
            description="The model this conversation runs on (fixed once it has started).",
        )
    ]


def choice_of(settings: Mapping[str, Any], choices: Sequence[ModelChoice]) -> ModelChoice | None:
    """The model the settings name, if it is one of `choices` (what the browser sends is checked here)."""
    key = settings.get(SETTING)
    return next((c for c in choices if c.key == key), None)


def refusal(conv: Conversation, choices: Sequence[ModelChoice]) -> str | None:
    """Why the team cannot start on its model, naming a model that would; None when it can."""
    roles = conv.cannot_drive()
    if not roles:
        return None
    pattern = conv.team.pattern
    why = "hand the conversation over" if pattern == "swarm" else "delegate"
    mine = find(choices, conv.model)
    name = mine.label if mine else conv.model
    better = [c for c in choices if c.calls_tools and _normal(c.model) != _normal(conv.model)]
    better.sort(key=lambda c: c.model.startswith("scripted:"))  # real models first
    if better:
        way = f"Choose **{better[0].label}** in the chat settings (the settings button in the message box), then send again."
    else:
        way = (
            "No model here can: start Ollama with a model that calls tools (`ollama pull qwen2.5`), or set "
            "OPENAI_API_KEY or ANTHROPIC_API_KEY for the server, then start a new chat."
        )
    return md_safe(
        f"**{conv.team.name} cannot start on {name}.** Its {pattern} pattern needs {', '.join(roles)} to {why}, "
        f"which takes tool calls, and this model cannot call tools: the team would run to its turn limit with "
        f"one role talking to itself. {way}"
    )


def model_line(choice: ModelChoice | None, model: str) -> str:
    label = choice.label if choice else model
    return md_safe(f"Model for this conversation: **{label}**.")


def _misfit(model: str, team: TeamSpec) -> bool:
    """Whether `model` is a script that names roles `team` does not have."""
    ref = parse_model(model)
    return ref.backend == "scripted" and not _fits(Path(ref.name), team)


async def open_conversation(
    team: TeamSpec, make: Callable[..., Conversation] = Conversation
) -> tuple[Conversation | None, list[ModelChoice], str | None]:
    """A new chat's conversation on the server's model, the models to offer, and what to tell the user. When the
    server's model cannot run the team (a script that names other roles), the first script of the scripts folder
    that fits it is used instead; when the conversation cannot be made at all, none (the text says why), but the
    picker still offers the models."""
    try:
        conv: Conversation | None = make(team)
        error = None
    except ConfigError as exc:
        conv, error = None, str(exc)
    choices = await available_models(team, conv.model if conv else None)
    if conv is not None and not _misfit(conv.model, team):
        return conv, choices, None
    for choice in (c for c in choices if c.model.startswith("scripted:") and not _misfit(c.model, team)):
        try:
            fallback = make(team, model=choice.model)
        except ConfigError:
            continue
        shown = Path(parse_model(conv.model).name).name if conv else "the server's model"
        return fallback, choices, md_safe(f"{shown} has no replies for this team; using **{choice.label}**.")
    if conv is not None:
        return conv, choices, None
    return (
        None,
        choices,
        md_safe(
            f"**This team cannot start on the server's model:** {error}\n\nChoose a model in the chat settings."
        ),
    )


def switch(
    team: TeamSpec,
    conv: Conversation | None,
    settings: Mapping[str, Any],
    choices: Sequence[ModelChoice],
    make: Callable[..., Conversation] = Conversation,
) -> tuple[Conversation | None, str | None]:
    """Apply the chat settings: a new conversation on the chosen model (or None to keep `conv`), and what to
    tell the user. A conversation that has started (stored, or running) keeps its model."""
    choice = choice_of(settings, choices)
    if choice is None or (conv is not None and _normal(choice.model) == _normal(conv.model)):
        return None, None
    if conv is not None and (conv.store is not None or conv.running):
        kept = find(choices, conv.model)
        return None, md_safe(
            f"This conversation stays on **{kept.label if kept else conv.model}**, the model it started on: "
            "start a new chat to use another."
        )
    try:
        new = make(team, model=choice.model)
    except ConfigError as exc:
        return None, md_safe(f"**{choice.label} cannot run this team:** {exc}")
    return new, "\n\n".join(t for t in (model_line(choice, new.model), refusal(new, choices)) if t)


def marked(conv: Conversation, source: str, text: str) -> str:
    """`text` as `source` said it, marked as demo quality when the embedded model wrote it."""
    return demo_marked(text) if conv.demo_quality(source) else text
