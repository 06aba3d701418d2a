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
    ScriptExhaustedError,
    TeamFileError,
    UnknownTeamError,
)
from .events import Event, RunResult
from .models import Meter, ScriptedModel, parse_model
from .run import Run
from .spec import RoleSpec, TeamSpec, TerminationSpec, load_team_file
from .tools import ToolRegistry, tool

__all__ = [
    "ConfigError",
    "ContextOverflowError",
    "Conversation",
    "Event",
    "Meter",
    "MissingKeyError",
    "ModelStringError",
    "ParleyError",
    "RoleSpec",
    "Run",
    "RunError",
    "RunResult",
    "ScriptExhaustedError",
    "ScriptedModel",
    "TeamEntry",
    "TeamFileError",
    "TeamSpec",
    "TerminationSpec",
    "ToolRegistry",
    "UnknownTeamError",
    "discover_teams",
    "load_team_file",
    "parse_model",
    "resolve_team",
    "tool",
]

__version__ = "0.1.0"
