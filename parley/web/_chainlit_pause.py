"""Chainlit's millisecond pause in every message and step it builds, taken out of the event loop.

`chainlit.message.Message.__init__` and `chainlit.step.Step.__init__` call `time.sleep(0.001)`, so that two built in
a row get different creation times for Chainlit's own data layers to order them by. It blocks the server's one
event loop: every page, every run and every socket of the process wait. The web chat builds two or three of them
for each message an agent says (the message, its rating step, the moved Stop controls), so at 200 conversations
at once the loop stood still for a sixth of its time. parley orders a thread by its own stored events, never by
Chainlit's creation times (its data layer stores no step), and the page orders live messages as they arrive.

`install()` gives those two modules a `time` whose `sleep` of a millisecond or less returns at once; anything else
is the real `time`. `check()` says whether Chainlit still pauses so (when it stops, this module can go).
Chainlit offers no option for it; this is the one other module allowed to patch it (tests/_arch_names.py).
"""

from __future__ import annotations

import importlib
import inspect
import time
import types
from typing import Any

_message = importlib.import_module("chainlit.message")
_step = importlib.import_module("chainlit.step")  # (`chainlit.step` as an attribute is Chainlit's decorator)

_PAUSE_S = 0.001
_PATCHED = (_message, _step)
_PAUSE_LINE = "time.sleep(0.001)"


class _NoPause(types.ModuleType):
    """The `time` module, but a pause of `_PAUSE_S` or less does not block."""

    def __init__(self) -> None:
        super().__init__("time")

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        if seconds > _PAUSE_S:
            time.sleep(seconds)


def install() -> None:
    for module in _PATCHED:
        if not isinstance(getattr(module, "time", None), _NoPause):
            module.time = _NoPause()  # type: ignore[attr-defined]


def check() -> list[str]:
    """What no longer holds of Chainlit's pause (empty: it still pauses as described above)."""
    found = []
    for where, cls in ((_message, _message.Message), (_step, _step.Step)):
        if _PAUSE_LINE not in inspect.getsource(cls.__init__):
            found.append(f"{cls.__qualname__}.__init__ no longer calls {_PAUSE_LINE}: remove {__name__}")
        if not isinstance(getattr(where, "time", None), types.ModuleType):
            found.append(f"{where.__name__} no longer reads the `time` module as `time`")
    return found
