"""How a run numbers its turns: one numbering shared by the messages, the status line and the usage chart."""

from __future__ import annotations

__all__ = ["TurnNumbers"]


class TurnNumbers:
    """A turn takes its number when its message starts to show (its first streamed piece, or the message itself),
    so turns are numbered in the order their messages appear, whichever role of a parallel step finishes first."""

    def __init__(self) -> None:
        self._open: dict[str, int] = {}
        """The number of each role's turn in progress."""

    def of(self, source: str, finished: int, *, start: bool = True) -> int:
        """The number of `source`'s turn in progress, after `finished` turns. `start=False`: the number the turn
        has, or would take now, without giving it one (a tool call made before any text)."""
        turn = self._open.get(source)
        if turn is None:
            turn = max([finished, *self._open.values()]) + 1
            if start:
                self._open[source] = turn
        return turn

    def close(self, source: str, finished: int) -> int:
        """`source`'s turn ended, with a message or with nothing; its number."""
        turn = self.of(source, finished)
        del self._open[source]
        return turn

    def abandon_open(self) -> None:
        """The turns cut short were abandoned: their numbers are free again."""
        self._open.clear()
