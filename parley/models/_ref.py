"""Model strings: `local`, `scripted:PATH.yaml`, `openai:MODEL`, `azure:DEPLOYMENT`,
`anthropic:MODEL`, `ollama:MODEL`, `compatible:MODEL@BASE_URL`; `function:NAME` for a FunctionModel given to
the conversation as an object."""

from __future__ import annotations

from dataclasses import dataclass

from .._yaml import did_you_mean
from ..errors import ModelStringError

BACKENDS = ("local", "scripted", "openai", "azure", "anthropic", "ollama", "compatible", "function")
FORMS = "local, scripted:PATH.yaml, openai:MODEL, azure:DEPLOYMENT, anthropic:MODEL, ollama:MODEL, compatible:MODEL@BASE_URL"


@dataclass(frozen=True, kw_only=True)
class ModelRef:
    """A parsed model string."""

    backend: str
    name: str
    """Model, deployment or script path, depending on the backend."""
    base_url: str | None = None
    """Only for `compatible`."""

    def __str__(self) -> str:
        if self.backend == "local":
            return "local"
        tail = f"@{self.base_url}" if self.base_url else ""
        return f"{self.backend}:{self.name}{tail}"


def parse_model(text: str) -> ModelRef:
    """Parse a model string, or raise ModelStringError saying which forms are accepted."""
    raw = (text or "").strip()
    if not raw:
        raise ModelStringError(f"empty model string; use one of: {FORMS}")
    backend, sep, rest = raw.partition(":")
    backend = backend.strip().lower()
    if backend not in BACKENDS:
        raise ModelStringError(
            f"unknown model backend '{backend}' in '{raw}'{did_you_mean(backend, BACKENDS)}; use one of: {FORMS}"
        )
    rest = rest.strip()
    if backend == "local":
        if rest:
            raise ModelStringError(f"'{raw}': the local model takes no name; write just 'local'")
        return ModelRef(backend="local", name="smollm2-135m-instruct")
    if not sep or not rest:
        example = "scripted:demo.yaml" if backend == "scripted" else f"{backend}:MODEL"
        raise ModelStringError(f"'{raw}' names no model; write it as {example}")
    if backend == "compatible":
        name, at, url = rest.partition("@")
        if not at or not name or not url.startswith(("http://", "https://")):
            raise ModelStringError(
                f"'{raw}': write compatible:MODEL@BASE_URL, e.g. compatible:qwen2.5@http://localhost:8000/v1"
            )
        return ModelRef(backend="compatible", name=name, base_url=url.rstrip("/"))
    if backend == "scripted" and not rest.endswith((".yaml", ".yml")):
        raise ModelStringError(f"'{raw}': a scripted model names a YAML script file, e.g. scripted:demo.yaml")
    return ModelRef(backend=backend, name=rest)
