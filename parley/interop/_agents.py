"""An AutoGen AssistantAgent (and its model client and tools) as a parley role.

Tools are matched by name with parley's registry. A FunctionTool's Python source, which the JSON carries, is never
run, imported or copied: parley's tools are code the operator installed in `tools/`, not code a file brings along.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from typing import Any

from ..errors import ModelStringError
from ..models import parse_model
from ._component import Findings, Part, quote

__all__ = ["read_model", "read_role"]

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
AGENT_KEYS = {
    "name",
    "description",
    "system_message",
    "model_client",
    "tools",
    "workbench",
    "handoffs",
    "model_context",
    "model_client_stream",
    "reflect_on_tool_use",
    "tool_call_summary_format",
    "max_tool_iterations",
    "metadata",
    "memory",
    "structured_message_factory",
}
"""What an AssistantAgent's config holds (autogen-agentchat 0.4 to 0.7)."""
DEFAULT_SETTINGS: dict[str, Any] = {
    "reflect_on_tool_use": (False, None),
    "tool_call_summary_format": ("{result}", None),
    "max_tool_iterations": (1, None),
}
"""Agent settings whose AutoGen default is parley's behaviour too; other values are said to be left out."""
WORKBENCHES = ("StaticWorkbench", "StaticStreamWorkbench")
STUDIO_TOOLS = {"calculator": "calculate", "fetch_webpage": "fetch_url"}
"""AutoGen Studio's gallery tools that parley has under another name."""
MODEL_KEYS = {
    "model",
    "api_key",
    "base_url",
    "azure_deployment",
    "azure_endpoint",
    "api_version",
    "host",
    "max_tokens",
    "model_info",
}


def read_role(
    part: Part,
    pattern: str,
    tool_names: Collection[str],
    found: Findings,
    *,
    with_model: bool = True,
    workers: list[Part] | None = None,
) -> tuple[dict[str, Any], str | None] | None:
    """The role an agent becomes, with its model string (None when the JSON names none parley knows). With
    `workers`, the agents it calls as tools (AgentTool) are added there: it is a hierarchical team's manager."""
    if part.kind != "AssistantAgent":
        found.problem(part.path, _not_an_assistant(part.kind))
        return None
    config = part.config
    name = config.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        found.problem(
            part.at("name"),
            f"agent name {quote(name)} is not a parley role name (letters, digits, underscore; no path "
            "separators, spaces or dashes): rename the agent in AutoGen and export again",
        )
        return None
    if name == "user" and pattern == "swarm":
        found.problem(part.at("name"), "'user' is the human in a parley swarm: rename the agent")
    role: dict[str, Any] = {"name": name}
    description = config.get("description")
    if isinstance(description, str) and description.strip():
        role["description"] = " ".join(description.split())
    role["prompt"] = _prompt(config.get("system_message"), name)
    tools = _tools(part, name, tool_names, found, workers)
    if tools:
        role["tools"] = tools
    handoffs = _handoffs(part, pattern, found)
    if handoffs:
        role["handoffs"] = handoffs
    _settings(part, name, found, manager=bool(workers))
    client = part.child("model_client")
    cap = client.config.get("max_tokens") if client is not None else None
    if isinstance(cap, int) and not isinstance(cap, bool) and 1 <= cap <= 200_000:
        role["max_reply_tokens"] = cap
    model = read_model(client, found, who=name, where=part.at("model_client")) if with_model else None
    return role, model


def _not_an_assistant(kind: str) -> str:
    advice = {
        "UserProxyAgent": "the human is always part of a parley conversation (type to join in); remove the "
        "UserProxyAgent from the team",
        "CodeExecutorAgent": "grant a role the run_python tool instead (it runs in parley's sandbox)",
        "SocietyOfMindAgent": "use pattern: hierarchical with a sub-team instead",
        "MessageFilterAgent": "use a role's context: window instead",
        "MultimodalWebSurfer": "grant a role fetch_url instead",
        "FileSurfer": "grant a role read_file and list_files instead",
    }
    return f"agent {quote(kind)} has no parley equivalent (parley imports AssistantAgents): " + advice.get(
        kind, "rebuild it as an AssistantAgent in AutoGen, or add the role to the team file by hand"
    )


def _prompt(system_message: object, name: str) -> str:
    if isinstance(system_message, str) and system_message.strip():
        text = system_message.strip()
    else:
        text = f"You are {name}."
    # A block of text, never a file name: one line ending in .md or .txt would be read as a prompt file.
    return text + "\n"


def _tool_parts(part: Part, found: Findings) -> list[Part]:
    """The tools an agent has: `tools` (autogen-agentchat 0.4) or its static workbenches (0.5 on)."""
    tools: list[Part] = []
    for where, value in part.children("tools"):
        tool = Part.of(value, where)
        if tool is not None:
            tools.append(tool)
    for where, value in part.children("workbench"):
        bench = Part.of(value, where)
        if bench is None:
            continue
        if bench.kind not in WORKBENCHES:
            found.problem(
                where,
                f"workbench {quote(bench.kind)} has no parley equivalent: for an MCP server, declare it under "
                "the team file's mcp: and grant its tools as SERVER.* (see docs/tools.md, MCP servers)",
            )
            continue
        tools += [t for w, v in bench.children("tools") if (t := Part.of(v, w)) is not None]
    return tools


def _tools(
    part: Part, role: str, tool_names: Collection[str], found: Findings, workers: list[Part] | None
) -> list[str]:
    granted: list[str] = []
    for tool in _tool_parts(part, found):
        agent = tool.child("agent") if tool.kind == "AgentTool" else None
        if agent is not None and workers is not None:
            workers.append(agent)
            continue
        if tool.kind in ("AgentTool", "TeamTool"):
            found.problem(
                tool.path,
                f"{tool.kind} (an agent or team as a tool) maps to parley's hierarchical pattern only as the tool of "
                "the one agent of a RoundRobinGroupChat (the manager), calling AssistantAgents (its workers)",
            )
            continue
        name = tool.config.get("name")
        if not isinstance(name, str) or not name:
            found.problem(tool.path, f"tool {quote(tool.kind)} has no name, so parley cannot match it")
            continue
        own = name if name in tool_names else STUDIO_TOOLS.get(name)
        if own in tool_names and own is not None:
            granted += [own] if own not in granted else []
            if own != name or tool.config.get("source_code"):
                found.note(
                    f"tool {quote(name)} of {role}: granted as parley's own {own}; the Python source in the JSON "
                    "was not used"
                )
        else:
            found.note(
                f"tool {quote(name)} of {role} skipped: parley has no tool of that name, and never runs or copies "
                f"the Python source a JSON file carries (it would run with your rights); write it as a @tool "
                f"in tools/ and add it to {role}'s tools"
            )
    return granted


def _handoffs(part: Part, pattern: str, found: Findings) -> list[str]:
    targets: list[str] = []
    for where, value in part.children("handoffs"):
        target = value.get("target") if isinstance(value, dict) else value  # pyright: ignore[reportUnknownMemberType]
        if not isinstance(target, str) or not (target == "user" or NAME.match(target)):
            found.problem(where, f"handoff target {quote(target)} is not an agent name")
        elif pattern != "swarm":
            found.problem(
                where,
                f"a handoff (to {quote(target)}) outside a Swarm: parley hands off only in pattern: swarm; "
                "remove the handoffs or make the team a Swarm",
            )
        elif target not in targets:
            targets.append(target)
    return targets


def _settings(part: Part, name: str, found: Findings, *, manager: bool = False) -> None:
    config = part.config
    if config.get("memory"):
        found.problem(
            part.at("memory"),
            "agent memory has no parley equivalent: grant the role kb_search (the knowledge base) instead, or "
            "remove the memory",
        )
    if config.get("structured_message_factory") or config.get("output_content_type"):
        found.note(
            f"{name}'s structured output type left out: give the role validate: {{json_schema: ...}} instead"
        )
    _changed_settings(part, name, found, manager=manager)


def _changed_settings(part: Part, name: str, found: Findings, *, manager: bool) -> None:
    """Agent settings parley does its own way, when the JSON changes them from AutoGen's defaults."""
    config = part.config
    kept = {"max_tool_iterations"} if manager else set[str]()  # a manager's tool rounds are its delegations
    changed = [k for k, allowed in DEFAULT_SETTINGS.items() if config.get(k) not in allowed and k not in kept]
    if changed:
        found.note(f"{name}: {', '.join(changed)} left out (parley's tool loop is its own)")
    context = part.child("model_context")
    if context is not None and context.kind != "UnboundedChatCompletionContext":
        found.note(
            f"{name}'s model context {quote(context.kind)} left out: parley's context: window (4 turns by default) "
            "decides what a role sees"
        )
    unknown = sorted(k for k in config if k not in AGENT_KEYS and k != "output_content_type")
    if unknown:
        found.note(f"{name}: {', '.join(quote(k) for k in unknown[:8])} not known to parley, left out")


def read_model(part: Part | None, found: Findings, *, who: str, where: str) -> str | None:
    """parley's model string for an AutoGen model client; None (and a problem) when there is none."""
    if part is None:
        found.problem(where, f"{who} has no model_client: import with --model MODEL to choose parley's")
        return None
    client = part.child("model_client") if part.kind == "ChatCompletionCache" else part
    if client is None:
        found.problem(part.path, "ChatCompletionCache without a model_client")
        return None
    config = client.config
    model = _model_string(client, config)
    if model is None:
        found.problem(
            client.path,
            f"model client {quote(client.kind)} has no parley equivalent (parley knows OpenAI, Azure OpenAI, "
            "Anthropic, Ollama and OpenAI-compatible servers): import with --model MODEL to choose parley's",
        )
        return None
    try:
        parse_model(model)
    except ModelStringError as exc:
        found.problem(client.path, f"{quote(model)} is not a model parley can use: {exc}")
        return None
    ignored = sorted(k for k in config if k not in MODEL_KEYS)
    if ignored:
        found.note(f"{who}'s model settings {', '.join(quote(k) for k in ignored[:8])} left out")
    if config.get("api_key") and "*" not in str(config["api_key"]):
        found.note(f"{who}'s API key was not copied: set it in the environment (docs/models.md lists them)")
    return model


def _model_string(client: Part, config: dict[str, Any]) -> str | None:
    name = config.get("model")
    if not isinstance(name, str) or not name.strip():
        name = None
    kind = client.kind
    if kind == "OpenAIChatCompletionClient" and name:
        base = config.get("base_url")
        return f"compatible:{name}@{base}" if isinstance(base, str) and base else f"openai:{name}"
    if kind == "AzureOpenAIChatCompletionClient":
        deployment = config.get("azure_deployment") or name
        return f"azure:{deployment}" if isinstance(deployment, str) and deployment else None
    if kind == "AnthropicChatCompletionClient" and name:
        return f"anthropic:{name}"
    if kind == "OllamaChatCompletionClient" and name:
        return f"ollama:{name}"
    return None
