"""parley: teams of role-based AI agents in group chats, watched and steered by people."""

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
