"""Loop guards: a selector stuck on one speaker is redirected; a role repeating itself ends the run."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from _support import collect, team_yaml

from parley import Conversation
from parley.events import MessageEvent, NoticeEvent, RunResult

Write = Callable[[str, str], Path]


async def test_a_selector_stuck_on_one_speaker_is_redirected(write: Write) -> None:
    team = write("team.yaml", team_yaml("selector", roles=("alpha", "beta"), max_turns=5))
    script = write(
        "s.yaml",
        """
        roles:
          alpha: ["a1", "a2", "a3", "a4"]
          beta: ["b1"]
        selector: [alpha, alpha, alpha, alpha, alpha]
    """,
    )
    events = await collect(Conversation(team, model=f"scripted:{script}").start("Go"))
    said = [e.source for e in events if isinstance(e, MessageEvent)]
    assert said[:4] == ["alpha", "alpha", "alpha", "beta"]  # the fourth pick could not be alpha again
    notices = [e.content for e in events if isinstance(e, NoticeEvent)]
    assert "loop: alpha spoke 3 times in a row, so someone else speaks next" in notices


async def test_a_role_repeating_itself_ends_the_run_with_a_visible_reason(write: Write) -> None:
    team = write("team.yaml", team_yaml("round_robin", roles=("alpha", "beta"), max_turns=20))
    script = write(
        "s.yaml",
        """
        roles:
          alpha: ["Let me check.", "let me   check.", "Let me check.", "x"]
          beta: ["ok", "sure", "fine", "y"]
    """,
    )
    events = await collect(Conversation(team, model=f"scripted:{script}").start("Go"))
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "loop"
    assert result.detail == "loop: alpha said the same thing 3 times in a row" and result.turns == 5
