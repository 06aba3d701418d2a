"""Validation rules of a role (`validate:` in a team file): what is wrong with an answer, line by line."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import regex
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator as SchemaValidator
from jsonschema.validators import extend, validator_for
from referencing import Registry
from referencing.exceptions import Unresolvable

from .spec import ValidationSpec
from .tools import CheckDef

# `[^\S\n]*` (not `\s*`) before the newline: `\s*\n` backtracked over a run of blank lines and rescanned the rest
# of the answer at each step (quadratic on an opening fence followed by many newlines).
_FENCED = re.compile(r"```(?:json)?[^\S\n]*\n(.*?)```", re.DOTALL | re.IGNORECASE)
PATTERN_TIMEOUT_S = 1.0
"""Longest time a team's or suite's regular expression may take on one answer. Patterns come from files and
answers from models: a pattern that backtracks catastrophically (`^(a+)+$`) on a crafted answer would otherwise run
for hours, holding the event loop (Python's `re` cannot be interrupted and never releases the GIL)."""
TOO_SLOW = "the pattern took too long on this answer: simplify it"
PatternError = regex.error
"""A pattern the `regex` engine cannot compile."""


_DEADLINE: ContextVar[float | None] = ContextVar("parley_pattern_deadline", default=None)
"""While one answer is checked: when its patterns' shared time is up (a schema can hold many patterns)."""


def pattern_found(pattern: str, text: str, timeout_s: float = PATTERN_TIMEOUT_S) -> bool:
    """Whether `pattern` matches somewhere in `text`, given at most `timeout_s` of matching.

    Raises TimeoutError when the match takes longer: the caller reports it as a failure (TOO_SLOW).
    The `regex` engine checks its clock while it backtracks, so the time is bounded whatever the pattern;
    `concurrent=True` lets other threads run meanwhile (`text` is an immutable str).
    """
    deadline = _DEADLINE.get()
    if deadline is not None:
        timeout_s = min(timeout_s, deadline - time.monotonic())
        if timeout_s <= 0:
            raise TimeoutError("no time left for this answer's patterns")
    return regex.search(pattern, text, timeout=timeout_s, concurrent=True) is not None


def _found(pattern: str, text: str) -> bool | None:
    """pattern_found, or None when the pattern took too long."""
    try:
        return pattern_found(pattern, text)
    except TimeoutError:
        return None


# jsonschema runs a schema's `pattern` and `patternProperties` with Python's `re`, unbounded: the same keywords
# again, with the time limit. (`unevaluatedProperties` next to `patternProperties` is refused when the team loads.)
def _pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string"):
        found = _found(patrn, instance)
        if found is None:
            yield ValidationError(f"{TOO_SLOW} (pattern {patrn!r})")
        elif not found:
            yield ValidationError(f"{instance!r} does not match {patrn!r}")


def _pattern_properties(
    validator: Any,
    patterns: dict[str, Any],
    instance: Any,
    schema: Any,
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for patrn, subschema in patterns.items():
        for key, value in instance.items():
            found = _found(patrn, key)
            if found is None:
                yield ValidationError(f"{TOO_SLOW} (patternProperties {patrn!r}, property {key!r})")
            elif found:
                yield from validator.descend(value, subschema, path=key, schema_path=patrn)


def _additional_properties(
    plain: Any,
    validator: Any,
    allowed: Any,
    instance: Any,
    schema: Any,
) -> Iterator[ValidationError]:
    patterns = list(schema.get("patternProperties", {}))
    if not patterns or not validator.is_type(instance, "object"):
        yield from plain(validator, allowed, instance, schema)  # jsonschema's own: no pattern involved
        return
    known = schema.get("properties", {})
    # A pattern that took too long counts as matching here: patternProperties reports it.
    extras = [k for k in instance if k not in known and not any(_found(p, k) is not False for p in patterns)]
    if validator.is_type(allowed, "object"):
        for extra in extras:
            yield from validator.descend(instance[extra], allowed, path=extra)
    elif not allowed and extras:
        joined = ", ".join(repr(each) for each in sorted(extras))
        yield ValidationError(
            f"{joined} {'does' if len(extras) == 1 else 'do'} not match any of the regexes: "
            + ", ".join(repr(each) for each in sorted(patterns))
        )


def schema_validator(schema: dict[str, Any]) -> SchemaValidator:
    """A validator for a team file's schema that never fetches anything and bounds its patterns.

    The empty registry resolves only references inside the schema itself (`#...`): jsonschema would otherwise
    fetch `http(s)://` and `file://` references, with no timeout, on the event loop.
    """
    base = validator_for(schema)
    plain = base.VALIDATORS["additionalProperties"]
    bounded = extend(
        base,
        {
            "pattern": _pattern,
            "patternProperties": _pattern_properties,
            "additionalProperties": lambda *args: _additional_properties(plain, *args),
        },
    )
    return bounded(schema, registry=Registry())


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
        except (ValueError, RecursionError):  # RecursionError: brackets nested thousands deep
            continue
    raise ValueError("the answer contains no JSON value")


class Validator:
    """Checks answers against one role's rules."""

    def __init__(self, spec: ValidationSpec, check: CheckDef | None = None) -> None:
        self.spec = spec
        self.check = check
        self._schema = schema_validator(spec.json_schema) if spec.json_schema else None

    @property
    def retries(self) -> int:
        return self.spec.retries

    def problems(self, text: str) -> list[str]:
        """Every rule the answer breaks, each said so the role can fix it. Empty when it passes.

        All the patterns (validate.regex and the schema's) share PATTERN_TIMEOUT_S on one answer.
        """
        token = _DEADLINE.set(time.monotonic() + PATTERN_TIMEOUT_S)
        try:
            return self._problems(text)
        finally:
            _DEADLINE.reset(token)

    def _problems(self, text: str) -> list[str]:
        spec = self.spec
        out: list[str] = []
        if self._schema is not None:
            out += self._json_problems(text)
        if spec.regex is not None:
            try:
                if not pattern_found(spec.regex, text):
                    out.append(f"the answer must contain text matching the pattern {spec.regex}")
            except TimeoutError:
                out.append(
                    f"{TOO_SLOW} (validate.regex {spec.regex}; all patterns share {PATTERN_TIMEOUT_S:g} s "
                    "per answer)"
                )
        lowered = text.lower()
        out += [
            f"the answer must mention {needle!r}" for needle in spec.contains if needle.lower() not in lowered
        ]
        out += [
            f"the answer must not mention {needle!r}"
            for needle in spec.not_contains
            if needle.lower() in lowered
        ]
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
        try:
            errors = sorted(self._schema.iter_errors(value), key=lambda e: list(e.absolute_path))
        except Unresolvable as exc:  # a reference outside the schema: never fetched (see schema_validator)
            return [
                f"the team's json_schema has a reference that cannot be resolved inside it ({exc}): "
                "only references inside the schema (#...) are allowed"
            ]
        except RecursionError:
            return ["the answer's JSON is nested too deeply to check"]
        for err in errors:
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err.absolute_path)
            out.append(f"JSON at ${where}: {err.message}")
        return out

    def correction(self, problems: list[str], attempt: int) -> str:
        """The message that sends a failed answer back to its role."""
        lines = "\n".join(f"- {p}" for p in problems)
        left = self.retries - attempt + 1
        return (
            f"Your answer does not pass this team's checks:\n{lines}\n"
            f"Write the whole answer again with these fixed ({left} correction{'s' if left != 1 else ''} left "
            "before a human is asked to decide)."
        )
