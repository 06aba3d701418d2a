"""Moved: the `ask_human` tool to parley.engine.autogen.human, its name to parley.host (a shim until every
importer has switched)."""

from .engine.autogen.human import AskHumanTool
from .host import ASK_HUMAN, QuestionHost

__all__ = ["ASK_HUMAN", "AskHumanTool", "QuestionHost"]
