"""Team files: the documented YAML format, validated with line-numbered errors.

`load_team_file` reads and checks one; the models (`TeamSpec`, `RoleSpec`, ...) are its fields.
"""

from ._load import load_team_file
from ._models import (
    DEFAULT_MAX_REPLY_TOKENS,
    DEFAULT_WINDOW,
    PATTERNS,
    TRIGGERS,
    ConsensusSpec,
    ContextSpec,
    FanoutSpec,
    HierarchicalSpec,
    HumanSpec,
    LoopSpec,
    McpServerSpec,
    RoleSpec,
    TeamSpec,
    TerminationSpec,
    ValidationSpec,
)

__all__ = [
    "DEFAULT_MAX_REPLY_TOKENS",
    "DEFAULT_WINDOW",
    "PATTERNS",
    "TRIGGERS",
    "ConsensusSpec",
    "ContextSpec",
    "FanoutSpec",
    "HierarchicalSpec",
    "HumanSpec",
    "LoopSpec",
    "McpServerSpec",
    "RoleSpec",
    "TeamSpec",
    "TerminationSpec",
    "ValidationSpec",
    "load_team_file",
]
