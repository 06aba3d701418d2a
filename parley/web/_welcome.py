"""The welcome panel of each team: what it does, its roles and pattern as a small diagram, what the human can do
while it runs, and the model it runs on. Chainlit shows it on the empty chat (a chat profile's icon and
description) and when the team's name is hovered in the team picker."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from html import escape
from itertools import pairwise
from pathlib import Path

from ..spec import TeamSpec
from ._art import SYSTEM_COLOUR, assign_colours

ICON = "/public/parley-mark.svg"
"""parley's mark (public/), the icon of every team."""
DIAGRAMS = "welcome"
"""The folder under public/ the diagrams are written to (generated: not kept in git)."""
WIDTH, HEIGHT = 640, 360  # 16:9, the frame Chainlit gives a picture in Markdown

CAPTIONS = {
    "round_robin": "round robin: each role speaks in turn, round after round, until one says it is done",
    "sequential": "sequential: each role speaks once, in this order",
    "loop": "loop: the roles take turns, round after round, until the last one agrees",
    "selector": "selector: a model reads the conversation and picks who speaks next",
    "hierarchical": "hierarchical: the manager hands out sub-tasks and puts the answers together",
    "fanout": "fan-out: these roles answer at once; the last one joins their answers",
    "consensus": "consensus: the voters answer on their own, at once; a majority decides",
    "swarm": "swarm: a role hands the conversation to another, or back to you",
}
CHOOSE = " · another can be chosen in the chat settings (⚙ by the message box)"
CONTROLS = (
    "**While it runs** · type any time: your message joins the conversation after the current turn · "
    "**Interrupt** (a chip by the composer): pick it, type, send, and the current turn is cut short for your "
    "message · **Stop** (a button under the running team): ends the run at once; what was said stays, "
    "and a new message goes on from there"
)


@dataclass
class Layout:
    """Where the roles sit in the diagram: a row at the top, an optional row below, and the arrows."""

    top: list[str]
    bottom: list[str] = field(default_factory=list[str])
    arrows: list[tuple[str, str]] = field(default_factory=list[tuple[str, str]])
    back: bool = False
    """An arrow from the last of the top row back to the first (the turns go round)."""
    both_ways: bool = False
    helpers: set[str] = field(default_factory=set[str])
    """Boxes that are not roles (the selector, the vote)."""


def _fan_in(top: list[str], to: str, helper: bool = False) -> Layout:
    """A row of roles whose answers all go to one box below (a join, a vote)."""
    return Layout(top, [to], [(t, to) for t in top], helpers={to} if helper else set())


def _fan_out(boss: str, under: list[str], helper: bool = False) -> Layout:
    """One box above handing the turn or the work to a row of roles below (a selector, a manager)."""
    return Layout([boss], under, [(boss, u) for u in under], helpers={boss} if helper else set())


def _chain(spec: TeamSpec, names: list[str]) -> Layout:
    round_and_round = spec.pattern in ("round_robin", "loop") and len(names) > 1
    return Layout(
        names, arrows=list(pairwise(names)), back=round_and_round, both_ways=spec.pattern == "swarm"
    )


def _hierarchical(spec: TeamSpec, names: list[str]) -> Layout:
    boss = spec.hierarchical.manager if spec.hierarchical is not None else names[0]
    return _fan_out(boss, [n for n in names if n != boss])


def _fanout(spec: TeamSpec, names: list[str]) -> Layout:
    join = spec.fanout.join if spec.fanout is not None else names[-1]
    return _fan_in([n for n in names if n != join], join)


def _consensus(spec: TeamSpec, names: list[str]) -> Layout:
    judge = spec.consensus.judge if spec.consensus is not None else None
    return _fan_in(spec.voters, judge or "majority vote", helper=judge is None)


_LAYOUTS = {
    # every role, those woken by events too: the selector may pick any of them
    "selector": lambda spec, names: _fan_out("selector", spec.role_names, helper=True),
    "hierarchical": _hierarchical,
    "fanout": _fanout,
    "consensus": _consensus,
}


def layout(spec: TeamSpec) -> Layout:
    """Where the team's roles sit in its diagram, by its pattern."""
    names = [r.name for r in spec.scheduled] or spec.role_names
    return _LAYOUTS.get(spec.pattern, _chain)(spec, names)


def _row(names: list[str], y: int) -> dict[str, tuple[float, float, float]]:
    """Each box's centre x, top y and width, the row centred."""
    if not names:
        return {}
    gap = 18
    w = min(170.0, (WIDTH - 40 - gap * (len(names) - 1)) / len(names))
    x0 = (WIDTH - (w * len(names) + gap * (len(names) - 1))) / 2
    return {n: (x0 + i * (w + gap) + w / 2, float(y), w) for i, n in enumerate(names)}


def _box(name: str, cx: float, y: float, w: float, fill: str, helper: bool) -> str:
    shown = name if len(name) * 10 < w - 12 else name[: max(3, int((w - 12) / 10) - 1)] + "…"
    dash = ' stroke-dasharray="5 4"' if helper else ""
    return (
        f'<rect x="{cx - w / 2:.1f}" y="{y}" width="{w:.1f}" height="52" rx="10" fill="{fill}" '
        f'fill-opacity="0.16" stroke="{fill}" stroke-width="2"{dash}/>'
        f'<text x="{cx:.1f}" y="{y + 32}" text-anchor="middle">{escape(shown)}</text>'
    )


_STYLE = (
    "<style>text{fill:#1f2937;font:600 18px system-ui,sans-serif}.c{font:400 16px system-ui,sans-serif;"
    "fill:#4b5563}path,line{stroke:#6b7280;stroke-width:2;fill:none}.h{fill:#6b7280}"
    "@media (prefers-color-scheme: dark){text{fill:#e5e7eb}.c{fill:#9ca3af}path,line{stroke:#9ca3af}"
    ".h{fill:#9ca3af}}</style>"
    '<defs><marker id="a" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
    'orient="auto-start-reverse"><path class="h" d="M0 0L10 5L0 10z" style="stroke:none"/></marker></defs>'
)


def diagram_svg(spec: TeamSpec) -> str:
    """The team's roles and pattern as a picture: a box per role in its speaker colour, arrows for who follows
    or hands work to whom, and a line saying what the pattern does. Its text follows the page's theme."""
    plan = layout(spec)
    colours = assign_colours([n for n in (*plan.top, *plan.bottom) if n not in plan.helpers])
    top_y, bottom_y = (70, 210) if plan.bottom else (140, 0)
    where = _row(plan.top, top_y) | _row(plan.bottom, bottom_y)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(CAPTIONS.get(spec.pattern, spec.pattern))}">',
        _STYLE,
    ]
    ends = ' marker-start="url(#a)"' if plan.both_ways else ""
    for a, b in plan.arrows:
        (ax, ay, aw), (bx, by, bw) = where[a], where[b]
        if ay == by:  # side by side
            parts.append(
                f'<line x1="{ax + aw / 2 + 2:.1f}" y1="{ay + 26}" x2="{bx - bw / 2 - 2:.1f}" y2="{by + 26}" '
                f'marker-end="url(#a)"{ends}/>'
            )
        else:
            parts.append(
                f'<line x1="{ax:.1f}" y1="{ay + 54}" x2="{bx:.1f}" y2="{by - 4}" marker-end="url(#a)"{ends}/>'
            )
    if plan.back:
        (fx, fy, _), (lx, _, _) = where[plan.top[0]], where[plan.top[-1]]
        parts.append(
            f'<path d="M{lx:.1f} {fy + 56} C{lx:.1f} {fy + 120} {fx:.1f} {fy + 120} {fx:.1f} {fy + 58}" '
            'marker-end="url(#a)"/>'
        )
    for name, (cx, y, w) in where.items():
        helper = name in plan.helpers
        parts.append(
            _box(name, cx, y, w, SYSTEM_COLOUR if helper else colours.get(name, SYSTEM_COLOUR), helper)
        )
    name, _, what = CAPTIONS.get(spec.pattern, spec.pattern).partition(": ")
    parts.append(
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 44}" text-anchor="middle">{escape(name)}</text>'
        f'<text class="c" x="{WIDTH / 2}" y="{HEIGHT - 18}" text-anchor="middle">{escape(what)}</text></svg>'
    )
    return "".join(parts)


def write_diagram(public: Path, spec: TeamSpec) -> str:
    """Write the team's diagram under public/ (if it changed); its address for Markdown."""
    folder = public / DIAGRAMS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{spec.name}.svg"
    svg = diagram_svg(spec)
    if not path.exists() or path.read_text(encoding="utf-8") != svg:
        path.write_text(svg, encoding="utf-8")
    return f"/public/{DIAGRAMS}/{spec.name}.svg"


def model_in_use(spec: TeamSpec) -> list[str]:
    """The models the team's roles run on, as a conversation started now picks them (see Conversation)."""
    default = os.environ.get("PARLEY_MODEL") or spec.model or "local"
    seen: list[str] = []
    for role in spec.roles:
        model = role.model or default
        if model.startswith("scripted:"):  # a demo script: its file's name says enough
            model = "scripted:" + Path(model.removeprefix("scripted:")).name
        if model not in seen:
            seen.append(model)
    return seen


def _model_line(spec: TeamSpec) -> str:
    models = model_in_use(spec)
    named = ", ".join(f"`{m}`" for m in models)
    if models == ["local"]:
        return (
            f"**Model** · {named}: the small embedded model, for trying parley out; its answers are demo quality "
            f"(it may invent figures){CHOOSE}"
        )
    return f"**Model{'s' if len(models) > 1 else ''}** · {named}{CHOOSE}"


def welcome_markdown(spec: TeamSpec, public: Path) -> str:
    """The team's welcome panel (Markdown), its diagram written under `public`."""
    picture = write_diagram(public, spec)
    roles = " · ".join(f"**{r.name}**" + (f": {r.description}" if r.description else "") for r in spec.roles)
    return (
        f"{spec.description}\n\n"
        f"![{CAPTIONS.get(spec.pattern, spec.pattern)}]({picture})\n\n"
        f"{roles}\n\n{CONTROLS}\n\n{_model_line(spec)}"
    )
