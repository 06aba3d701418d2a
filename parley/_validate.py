"""Validation rules of a role (`validate:` in a team file): what is wrong with an answer, line by line."""

from __future__ import annotations

import json
import re
from typing import Any

import jsonschema

from .spec import ValidationSpec
from .tools import CheckDef

_FENCED = re.compile(r"```(?:json)?\s*\n(.*?)```", re.DOTALL | re.IGNORECASE)


def extract_json(text: str) -> Any:
    """The JSON value in an answer: the whole text, a fenced block, or the outermost {...} / [...]."""
    candidates = [text.strip(), *(m.group(1).strip() for m in _FENCED.finditer(text))]
    for opener, closer in (("{", "}"), ("[", "]")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            continue
    raise ValueError("the answer contains no JSON value")


class Validator:
    """Checks answers against one role's rules."""

    def __init__(self, spec: ValidationSpec, check: CheckDef | None = None) -> None:
        self.spec = spec
        self.check = check
        self._schema = jsonschema.validators.validator_for(spec.json_schema)(spec.json_schema) if spec.json_schema else None

    @property
    def retries(self) -> int:
        return self.spec.retries

    def problems(self, text: str) -> list[str]:
        """Every rule the answer breaks, each said so the role can fix it. Empty when it passes."""
        spec = self.spec
        out: list[str] = []
        if self._schema is not None:
            out += self._json_problems(text)
        if spec.regex is not None and not re.search(spec.regex, text):
            out.append(f"the answer must contain text matching the pattern {spec.regex}")
        lowered = text.lower()
        out += [f"the answer must mention {needle!r}" for needle in spec.contains if needle.lower() not in lowered]
        out += [f"the answer must not mention {needle!r}" for needle in spec.not_contains if needle.lower() in lowered]
        if self.check is not None:
            problem = self.check.problem(text)
            if problem:
                out.append(problem)
        return out

    def _json_problems(self, text: str) -> list[str]:
        assert self._schema is not None
        try:
            value = extract_json(text)
        except ValueError:
            return ["the answer must be JSON matching the schema " + json.dumps(self.spec.json_schema)]
        out = []
        for err in sorted(self._schema.iter_errors(value), key=lambda e: list(e.absolute_path)):
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            out.append(f"JSON at ${where}: {err.message}")
        return out

    def correction(self, problems: list[str], attempt: int) -> str:
        """The message that sends a failed answer back to its role."""
        lines = "\n".join(f"- {p}" for p in problems)
        left = self.retries - attempt + 1
        return (f"Your answer does not pass this team's checks:\n{lines}\n"
                f"Write the whole answer again with these fixed ({left} correction{'s' if left != 1 else ''} left "
                "before a human is asked to decide).")
