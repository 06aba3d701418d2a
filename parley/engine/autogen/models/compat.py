"""The model-string checks conversation.py and evaluations called before capabilities came from model info
(ModelPool.capabilities). They decide from the backend's name; kept only until their callers switch, then
deleted."""

from __future__ import annotations

from ....models import parse_model, scripted_via


def supports_tools(model: str) -> bool:
    """Whether the model can emit tool calls (the embedded model cannot). Use ModelPool.capabilities(m).tools."""
    return parse_model(model).backend != "local"


def reflects(model: str) -> bool:
    """Whether a role on this model answers its tools' results in a second call. Use
    ModelPool.capabilities(m).reflects."""
    return parse_model(model).backend != "scripted" or scripted_via() is not None


def uses_json_schema(model: str) -> bool:
    """Whether the selector should bind this model's answer to a JSON schema. Use
    ModelPool.capabilities(m).json_schema."""
    backend = parse_model(model).backend
    if backend == "scripted":
        return scripted_via() == "openai"  # served as OpenAI's API, answered as its schema says
    return backend in ("local", "compatible", "openai", "azure")
