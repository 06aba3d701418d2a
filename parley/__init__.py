"""parley: teams of role-based AI agents in group chats, watched and steered by people."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .catalog import TeamEntry, discover_teams, resolve_team
    from .conversation import Conversation
    from .errors import (
        ConfigError,
        ContextOverflowError,
        MissingKeyError,
        ModelStringError,
        ParleyError,
        RunError,
        RunStateError,
        ScriptExhaustedError,
        StoreError,
        TeamFileError,
        UnknownRequestError,
        UnknownTeamError,
        UsageError,
    )
    from .events import Event, RunResult
    from .human import HumanPolicy, StandingRules
    from .inbox import HumanInbox
    from .models import (
        Capabilities,
        FunctionModel,
        Meter,
        ModelReply,
        ModelRequest,
        ScriptedModel,
        ToolCall,
        ToolResult,
        parse_model,
    )
    from .models import Message as ModelMessage
    from .run import Run
    from .spec import RoleSpec, TeamSpec, TerminationSpec, load_team_file
    from .tools import ToolRegistry, tool

_EXPORTS: dict[str, tuple[str, str]] = {
    "Capabilities": (".models", "Capabilities"),
    "ConfigError": (".errors", "ConfigError"),
    "ContextOverflowError": (".errors", "ContextOverflowError"),
    "Conversation": (".conversation", "Conversation"),
    "Event": (".events", "Event"),
    "FunctionModel": (".models", "FunctionModel"),
    "HumanInbox": (".inbox", "HumanInbox"),
    "HumanPolicy": (".human", "HumanPolicy"),
    "Meter": (".models", "Meter"),
    "MissingKeyError": (".errors", "MissingKeyError"),
    "ModelMessage": (".models", "Message"),
    "ModelReply": (".models", "ModelReply"),
    "ModelRequest": (".models", "ModelRequest"),
    "ModelStringError": (".errors", "ModelStringError"),
    "ParleyError": (".errors", "ParleyError"),
    "RoleSpec": (".spec", "RoleSpec"),
    "Run": (".run", "Run"),
    "RunError": (".errors", "RunError"),
    "RunResult": (".events", "RunResult"),
    "RunStateError": (".errors", "RunStateError"),
    "ScriptExhaustedError": (".errors", "ScriptExhaustedError"),
    "ScriptedModel": (".models", "ScriptedModel"),
    "StandingRules": (".human", "StandingRules"),
    "StoreError": (".errors", "StoreError"),
    "TeamEntry": (".catalog", "TeamEntry"),
    "TeamFileError": (".errors", "TeamFileError"),
    "TeamSpec": (".spec", "TeamSpec"),
    "TerminationSpec": (".spec", "TerminationSpec"),
    "ToolCall": (".models", "ToolCall"),
    "ToolRegistry": (".tools", "ToolRegistry"),
    "ToolResult": (".models", "ToolResult"),
    "UnknownRequestError": (".errors", "UnknownRequestError"),
    "UnknownTeamError": (".errors", "UnknownTeamError"),
    "UsageError": (".errors", "UsageError"),
    "discover_teams": (".catalog", "discover_teams"),
    "load_team_file": (".spec", "load_team_file"),
    "parse_model": (".models", "parse_model"),
    "resolve_team": (".catalog", "resolve_team"),
    "tool": (".tools", "tool"),
}
"""What `parley` offers, by name: (module, name there). Imported on first use, so that a command that needs little
(`parley ui`, `parley users`, `parley --help`) starts without loading the engine, AutoGen and MCP."""


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'parley' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "Capabilities",
    "ConfigError",
    "ContextOverflowError",
    "Conversation",
    "Event",
    "FunctionModel",
    "HumanInbox",
    "HumanPolicy",
    "Meter",
    "MissingKeyError",
    "ModelMessage",
    "ModelReply",
    "ModelRequest",
    "ModelStringError",
    "ParleyError",
    "RoleSpec",
    "Run",
    "RunError",
    "RunResult",
    "RunStateError",
    "ScriptExhaustedError",
    "ScriptedModel",
    "StandingRules",
    "StoreError",
    "TeamEntry",
    "TeamFileError",
    "TeamSpec",
    "TerminationSpec",
    "ToolCall",
    "ToolRegistry",
    "ToolResult",
    "UnknownRequestError",
    "UnknownTeamError",
    "UsageError",
    "discover_teams",
    "load_team_file",
    "parse_model",
    "resolve_team",
    "tool",
]

__version__ = "0.1.0"
