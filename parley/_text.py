"""Text that people type: checked once, where it enters a run."""

from __future__ import annotations

from .errors import ConfigError


def human_text(text: str | None, what: str = "message") -> str:
    """`text` stripped, or a ConfigError that says what is wrong with it. Anything that is valid Unicode
    text passes unchanged (control characters included): it is data, stored and shown as typed."""
    if text is None or not text.strip():
        raise ConfigError(f"the {what} is empty: type something")
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            raise ConfigError(
                f"the {what} is not valid text: a lone surrogate (U+{ord(ch):04X}) at character {i + 1}; "
                "it may come from a broken copy and paste, so type or paste it again"
            )
    return text.strip()


def one_line(text: str, limit: int) -> str:
    """`text` on one line (runs of whitespace become one space), cut to `limit` characters with an ellipsis."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def redact_secrets(text: str) -> str:
    """`text` with the values of secret environment variables (API keys, the web chat's signing secret)
    replaced by ***: a backend that echoes a key in its error must not put it in the store or on screen."""
    import os

    for name, value in os.environ.items():
        if len(value) >= 8 and (
            name.endswith(("_API_KEY", "_SECRET", "_TOKEN")) or name == "PARLEY_DATABASE_URL"
        ):
            text = text.replace(value, "***")
    return text
