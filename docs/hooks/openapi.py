"""MkDocs hook: the page api-reference.md, rendered at build time from parley's own OpenAPI documents.

The documents come from the API's FastAPI apps (`parley.api.api_app`, `parley.api.openai_app`), built in this
process with a store that is never opened: no server runs and nothing is fetched, so the reference is always the
code's own and the build stays offline."""

from __future__ import annotations

import json
from typing import Any

PAGE = "api-reference.md"
"""Where the generated page sits in the site (its nav entry names this path)."""

_METHODS = ("get", "post", "put", "patch", "delete")


def documents() -> list[tuple[str, str, dict[str, Any]]]:
    """(prefix, title, OpenAPI document) for each of parley's HTTP APIs."""
    from parley.api import API_PREFIX, OPENAI_PREFIX, Hub, api_app, openai_app

    async def no_store() -> Any:  # pragma: no cover - building the document never opens the store
        raise RuntimeError("the documentation build opens no store")

    hub = Hub(no_store)
    return [
        (API_PREFIX, "REST and Server-Sent Events", api_app(hub).openapi()),
        (OPENAI_PREFIX, "OpenAI-compatible", openai_app(hub).openapi()),
    ]


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _schema_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _type(schema: dict[str, Any], prefix: str) -> str:
    """A schema as a short type in words, with a link to a named schema."""
    if "$ref" in schema:
        name = _schema_name(schema["$ref"])
        return f"[{name}](#{_anchor(prefix, name)})"
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " or ".join(_type(s, prefix) for s in schema[union])
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "enum" in schema:
        return " or ".join(f"`{json.dumps(v)}`" for v in schema["enum"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list of {_type(schema.get('items', {}), prefix)}"
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return f"object of {_type(schema['additionalProperties'], prefix)}"
    return "null" if kind == "null" else f"{kind}"


def _anchor(prefix: str, name: str) -> str:
    return f"{prefix.strip('/').replace('/', '-')}-{name}".lower()


def _parameters(op: dict[str, Any], prefix: str) -> list[str]:
    params = op.get("parameters", [])
    if not params:
        return []
    lines = ["| parameter | in | type | required | what it is |", "|---|---|---|---|---|"]
    for p in params:
        schema = p.get("schema", {})
        about = p.get("description") or schema.get("description") or schema.get("title", "")
        if "default" in schema:
            about = f"{about} (default `{json.dumps(schema['default'])}`)".strip()
        required = "yes" if p.get("required") else "no"
        lines.append(f"| `{p['name']}` | {p['in']} | {_type(schema, prefix)} | {required} | {_cell(about)} |")
    return [*lines, ""]


def _body(op: dict[str, Any], prefix: str) -> list[str]:
    content = op.get("requestBody", {}).get("content", {})
    return [
        f"Request body ({kind}): {_type(media.get('schema', {}), prefix)}\n"
        for kind, media in content.items()
    ]


def _responses(op: dict[str, Any], prefix: str) -> list[str]:
    lines = ["| status | what it means | body |", "|---|---|---|"]
    for status, answer in op.get("responses", {}).items():
        kinds = answer.get("content", {})
        body = "; ".join(
            f"{kind}: {_type(media.get('schema', {}), prefix)}" if media.get("schema") else kind
            for kind, media in kinds.items()
        )
        lines.append(f"| {status} | {_cell(answer.get('description', ''))} | {body or '-'} |")
    return [*lines, ""]


def _operations(prefix: str, doc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for path, item in doc.get("paths", {}).items():
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            call = f"`{method.upper()} {prefix}{path}`"
            summary = op.get("summary", "").strip()
            lines += [f"### {summary}", "", call, ""] if summary else [f"### {call}", ""]
            if op.get("description"):
                lines += [op["description"].strip(), ""]
            if op.get("security"):
                lines += ["Needs an API token: `Authorization: Bearer TOKEN`.", ""]
            lines += _parameters(op, prefix) + _body(op, prefix) + _responses(op, prefix)
    return lines


def _schemas(prefix: str, doc: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name, schema in sorted(doc.get("components", {}).get("schemas", {}).items()):
        lines += [f"### {name} {{#{_anchor(prefix, name)}}}", ""]
        if schema.get("description"):
            lines += [schema["description"].strip(), ""]
        props = schema.get("properties", {})
        if not props:
            lines += [f"Type: {_type(schema, prefix)}", ""]
            continue
        required = set(schema.get("required", []))
        lines += ["| field | type | required | what it is |", "|---|---|---|---|"]
        for field, spec in props.items():
            about = spec.get("description", "")
            if "default" in spec and field not in required:
                about = f"{about} (default `{json.dumps(spec['default'])}`)".strip()
            need = "yes" if field in required else "no"
            lines.append(f"| `{field}` | {_type(spec, prefix)} | {need} | {_cell(about)} |")
        lines.append("")
    return lines


def render(docs: list[tuple[str, str, dict[str, Any]]]) -> str:
    """The reference page's Markdown."""
    lines = [
        "# API reference",
        "",
        "Generated from parley's own OpenAPI documents when this site is built. A running server serves them",
        "too: `GET /api/v1/openapi.json` and `GET /v1/openapi.json`. How to sign in, stream events and resume a",
        "stream is on the [HTTP API](api.md) page.",
        "",
    ]
    for prefix, title, doc in docs:
        info = doc.get("info", {})
        lines += [f"## {title}: `{prefix}`", ""]
        if info.get("summary"):
            lines += [f"{info['summary'].strip()} (OpenAPI {doc.get('openapi', '')}).", ""]
        for name, scheme in doc.get("components", {}).get("securitySchemes", {}).items():
            how = f"{scheme.get('type', '')} {scheme.get('scheme', '')}".strip()
            lines += [f"Authentication `{name}` ({how}): {_cell(scheme.get('description', ''))}", ""]
        lines += _operations(prefix, doc)
        schemas = _schemas(prefix, doc)
        if schemas:
            lines += [f"### Schemas of `{prefix}`", "", *[_demote(line) for line in schemas]]
    return "\n".join(lines) + "\n"


def _demote(line: str) -> str:
    return "#" + line if line.startswith("### ") else line


def on_files(files: Any, config: Any) -> Any:
    """Add the generated page to the site's files (MkDocs event)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, PAGE, content=render(documents())))
    return files
