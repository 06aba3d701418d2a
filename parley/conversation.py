"""A conversation: a team, its models and meter, everything said so far, and the runs started on it.

This is parley's public API. The adapters (the CLI, the web chat, the evaluations, programs) use it; it starts
`Run`s, which drive the engine (parley.engine): nothing here knows AutoGen.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import os
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._mcp_session import McpHub
from ._model_notes import DEMO_NOTICE, LOCAL, model_notices, needs_tool_calls
from ._text import human_text
from .catalog import check_trusted, resolve_team
from .engine import Triggers
from .engine.autogen.images import ImageShelf
from .engine.autogen.models import ModelPool
from .engine.autogen.session import TeamSession
from .engine.autogen.state import Checkpoints
from .errors import ConfigError, RunStateError
from .events import (
    AnswerEvent,
    EscalationEvent,
    EscalationResolvedEvent,
    Event,
    NoteEvent,
    NoticeEvent,
    Position,
    QuestionEvent,
    StopReason,
)
from .host import ASK_HUMAN
from .inbox import HumanInbox, HumanMessage
from .models import FunctionModel, Meter
from .paths import data_dir, inside, is_server_id
from .patterns import pattern_of
from .spec import TeamSpec, TerminationSpec
from .state import ConversationState
from .telemetry import observe
from .tools import RunContext, ToolDef, ToolRegistry, default_registry

if TYPE_CHECKING:
    from .run import Run
    from .store import Lease, Store

__all__ = ["Conversation"]


def _triggers(team: TeamSpec) -> Triggers:
    roles_on: dict[str, list[str]] = {}
    for role in team.roles:
        for on in role.on:
            roles_on.setdefault(on, []).append(role.name)
    return Triggers(roles_on)


class Conversation:
    """A team plus everything said so far. Start runs on it one after another."""

    def __init__(
        self,
        team: TeamSpec | str | Path,
        *,
        model: str | FunctionModel | None = None,
        max_turns: int | None = None,
        max_tokens: int | None = None,
        timeout_s: float | None = None,
        registry: ToolRegistry | None = None,
        teams_dirs: Sequence[str | Path] = (),
        approvals: Mapping[str, bool] | None = None,
        _parent: Conversation | None = None,
    ) -> None:
        self._root: Conversation = _parent._root if _parent is not None else self
        """The top-level conversation: a sub-team's runs, store, meter, human and MCP sessions are its parent's."""
        self._lineage: tuple[str, ...] = (*_parent._lineage, _parent.team.name) if _parent is not None else ()
        self.registry = registry or default_registry()
        self.team = team if isinstance(team, TeamSpec) else resolve_team(team, teams_dirs, self.registry)
        self.pattern = pattern_of(self.team)
        self._share(_parent)
        named = self._models(model)
        overrides = {"max_turns": max_turns, "max_tokens": max_tokens, "timeout_s": timeout_s}
        self.limits: TerminationSpec = self.pattern.limits(
            self.team,
            self.team.termination.model_copy(update={k: v for k, v in overrides.items() if v is not None}),
        )
        self.tool_data: Path | None = None
        """Where its tools keep data they change (RunContext.data_dir); None: parley's data folder."""
        self.approvals: dict[str, bool] = dict(approvals or {})
        """Standing decisions per tool name, `*` for every tool (the CLI's --approve/--deny); others wait."""
        self.store: Store | None = None
        self.thread_id: str | None = None
        self.fence: Lease | None = None
        """The lease under which this process writes the stored thread, when a cluster shares it (parley.cluster):
        its runs' writes are refused once another process has taken the conversation over."""
        self.inbox = HumanInbox()
        """Human messages waiting for the team (see parley.inbox)."""
        self.triggers = _triggers(self.team)
        self.history: list[Event] = []
        self.turn = 0
        self.notices: list[str] = []
        self.workers = self.pattern.workers(self.team)
        """Hierarchical pattern: the roles the manager delegates to."""
        self.speakers = self.pattern.speakers(self.team)
        """Who speaks in the conversation: the roles (and a consensus team's verdict)."""
        self.subteams = self._subteams(named, teams_dirs)
        """Hierarchical pattern: workers that are whole teams, sharing this conversation's models and human."""
        self._local_id = uuid.uuid4().hex
        if _parent is None:
            self._check_scripts()
        self.mcp_grants = self._check_tools(teams_dirs)
        """Each role's MCP tools (`server.tool` or `server.*`), connected on first use."""
        self.checkpoints = Checkpoints([r.name for r in self.team.scheduled])
        self.engine = TeamSession(self)
        """The team on the engine: built on first use, from the last checkpoint."""
        self._run: Run | None = None

    def _models(self, model: str | FunctionModel | None) -> str | None:
        """Each role's model; returns the explicit model's name, if one was given."""
        named = (
            self.pool.name_of(model) if model is not None else None
        )  # a FunctionModel is named "function:NAME"
        default_model = os.environ.get("PARLEY_MODEL") or self.team.model or "local"
        self.model = named or default_model
        # An explicit model (the CLI's --model) applies to every role; otherwise a role's own model wins.
        self.role_models = {r.name: named or r.model or default_model for r in self.team.roles}
        return named

    def _subteams(self, model: str | None, teams_dirs: Sequence[str | Path]) -> dict[str, Conversation]:
        subteams = {
            r.name: Conversation(
                self._subteam_spec(r.team, teams_dirs),
                model=model,
                registry=self.registry,
                teams_dirs=teams_dirs,
                _parent=self,
            )
            for r in self.team.roles
            if r.team is not None
        }
        for sub in subteams.values():
            self.speakers |= sub.speakers
            self.notices += sub.notices
        return subteams

    def _share(self, parent: Conversation | None) -> None:
        """What a sub-team shares with the conversation it works in: its meter and models, MCP sessions,
        pictures and notes. A top-level conversation has its own."""
        if parent is not None:
            root = parent._root
            self.meter, self.pool, self.mcp = root.meter, root.pool, root.mcp
            self.images, self.notes_board = root.images, root.notes_board
            return
        self.meter = Meter()
        self.pool = ModelPool(self.meter)
        self.mcp = McpHub(self.notice)
        """One session per MCP server for the whole conversation, its sub-teams included; closed with it."""
        self.images = ImageShelf()
        """Pictures MCP tools returned, for roles whose models accept images."""
        self.notes_board: list[dict[str, Any]] = []
        """Notes every role of this conversation reads and writes (the team_notes tool)."""

    def _check_scripts(self) -> None:
        everyone = [*self.team.role_names, *(n for sub in self.subteams.values() for n in sub.speakers)]
        for script in self.pool.scripts:
            script.check_roles(everyone, picks_are_roles=self.team.pattern == "selector")

    def _subteam_spec(self, ref: str, teams_dirs: Sequence[str | Path]) -> TeamSpec:
        """A sub-team by name, or by a path relative to the team file that names it."""
        source = self.team.source
        if source is not None and ref.endswith((".yaml", ".yml")) and (source.parent / ref).is_file():
            ref = str(source.parent / ref)
        spec = resolve_team(ref, teams_dirs, self.registry)
        if spec.name in (*self._lineage, self.team.name):
            chain = " → ".join([*self._lineage, self.team.name, spec.name])
            raise ConfigError(f"sub-teams go round in a circle ({chain}): a team cannot contain itself")
        return spec

    def _check_tools(self, teams_dirs: Sequence[str | Path]) -> dict[str, list[str]]:
        """Every granted tool exists; what the models cannot do is said (see take_notices). Returns the MCP
        grants."""
        check_trusted(self.team, teams_dirs)  # before any MCP server's command can run
        grants: dict[str, list[str]] = {}
        for role in self.team.roles:
            missing = [
                t for t in role.tools if t not in self.registry.tools and "." not in t and t != ASK_HUMAN
            ]
            if missing:
                raise ConfigError(
                    f"role '{role.name}' is granted unknown tools: {', '.join(missing)} (`parley tools` lists them)"
                )
            mcp = [t for t in role.tools if "." in t]
            if mcp and self.pool.capabilities(self.role_models[role.name]).tools:
                grants[role.name] = mcp
        self.notices += model_notices(self.team, self.role_models, self._calls_tools)
        return grants

    def _calls_tools(self, model: str) -> bool:
        return self.pool.capabilities(model).tools

    def take_notices(self) -> list[str]:
        """What to say about the models at the start of a run: each notice once per thread (not one the
        thread's history holds already), the embedded model's demo quality first."""
        said = {e.content for e in self.history if isinstance(e, NoticeEvent)}
        fresh = [n for n in dict.fromkeys(self.notices) if n not in said]
        return sorted(fresh, key=lambda n: n != DEMO_NOTICE)

    def cannot_drive(self) -> list[str]:
        """The roles the team's pattern needs to call tools (a swarm's handoffs, a hierarchy's delegations) whose
        model cannot: the team does not work on these models (the web chat refuses to start it)."""
        return [r for r in needs_tool_calls(self.team) if not self._calls_tools(self.role_models[r])]

    def demo_quality(self, source: str) -> bool:
        """Whether `source`'s messages come from the embedded model (demo quality), sub-teams' roles included."""
        for conv in (self, *self.subteams.values()):
            if source in conv.role_models:
                return conv.role_models[source] == LOCAL
        return False

    def tool_def(self, name: str) -> ToolDef[..., Any]:
        """A registered tool as this team uses it (the team file's `approvals:` override the tool's own)."""
        tooldef = self.registry.get(name)
        override = self.team.approvals.get(tooldef.name)
        if override is not None:
            tooldef = dataclasses.replace(tooldef, approval=override == "required")
        return tooldef

    def tools_of(self, role: str) -> list[str]:
        """The names of the registered tools `role` can call on its model (MCP tools aside)."""
        return [t.name for t in self.engine.tools[role]]

    # -- the host (parley.host): what the engine's agents and tools reach ------------------------

    @property
    def id(self) -> str:
        """The stored thread's id once attached, otherwise an id of this conversation's own."""
        if self._root is not self:
            return self._root.id
        return self.thread_id or self._local_id

    @property
    def workspace(self) -> Path:
        """The conversation's own folder for the files its tools read and write."""
        if not is_server_id(self.id):  # ids come from browsers and stores: never let one name a path
            raise ValueError(f"conversation id {self.id!r} is not of the server's own form (a UUID)")
        root = data_dir() / "workspaces"
        root.mkdir(mode=0o700, exist_ok=True)  # mkdir(parents=True) would make it with the umask's mode
        path = inside(root, self.id)
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def context_for(self, role: str) -> RunContext:
        return RunContext(
            workspace=self.workspace,
            role=role,
            notes=self.notes_board,
            conversation_id=self.id,
            data_dir=self._root.tool_data,
            on_note=functools.partial(self.note_added, role),
        )

    def note_added(self, role: str, note: dict[str, Any]) -> None:
        """`role` added a note to the team's board (the team_notes tool): it goes on record as an event."""
        run = self._live()
        if run is not None:
            run.emit(NoteEvent(source=role, content=str(note.get("text", "")), turn=run.live_turn()))

    def _live(self) -> Run | None:
        run = self._root._run
        return run if run is not None and run.result is None else None

    def request_approval(
        self,
        role: str,
        tool: str,
        args: dict[str, Any],
        call_id: str | None,
    ) -> Awaitable[tuple[bool, str]]:
        run = self._live()
        if run is None:
            done: asyncio.Future[tuple[bool, str]] = asyncio.get_running_loop().create_future()
            done.set_result((False, "no run is in progress"))
            return done
        return run.decisions.request_approval(role, tool, args)

    def open_escalation(
        self,
        kind: str,
        source: str,
        content: str,
        positions: list[Position],
    ) -> tuple[EscalationEvent, asyncio.Future[EscalationResolvedEvent]]:
        run = self._live()
        if run is None:
            raise RunStateError("an escalation needs a run in progress")
        return run.decisions.open_escalation(kind, source, content, positions)

    def open_question(self, source: str, question: str) -> tuple[QuestionEvent, asyncio.Future[AnswerEvent]]:
        run = self._live()
        if run is None:
            raise RunStateError("a question needs a run in progress")
        human = self._root.team.human
        return run.decisions.open_question(source, question, human.question_timeout_s, human.default_answer)

    def fire(self, trigger: str) -> None:
        """Something happened that may wake event-driven roles (after the current turn)."""
        self.triggers.fire(trigger)

    def files_written(self, role: str, tool: str, paths: list[Path]) -> None:
        self.fire("file written")
        run = self._live()
        if run is not None:
            run.files_written(role, tool, paths)

    def end_run(self, reason: StopReason, detail: str) -> None:
        """End the run in progress now (the engine enforcing a limit inside a turn)."""
        run = self._live()
        if run is not None:
            run.end(reason, detail)

    def notice(self, text: str) -> None:
        """A warning for whoever watches the run in progress."""
        run = self._live()
        if run is not None:
            run.emit(NoticeEvent(source="parley", content=text, level="warning", turn=run.live_turn()))

    def picked(self, name: str, fallback: bool) -> None:
        """The selector picked the next speaker."""
        run = self._live()
        if run is not None:
            run.picked(name, fallback)

    # -- storing -----------------------------------------------------------------------------------

    def attach(self, store: Store, thread_id: str) -> None:
        """Persist every event and checkpoint of later runs to `store` (written before they are shown)."""
        self.store = store
        self.thread_id = thread_id

    async def save_to(self, store: Store, owner: str, title: str, *, thread_id: str | None = None) -> str:
        """Create the stored thread for this conversation (owned by `owner`) and attach to it: the one way a
        thread is made, by the CLI, the evaluations and the web chat alike. Returns the thread's id."""
        tid = await store.create_thread(owner, self.team.name, self.model, title, thread_id=thread_id)
        self.attach(store, tid)
        return tid

    def restore_state(self, state: ConversationState) -> None:
        """A freshly built conversation takes a stored one's state (see parley.state.restore)."""
        self.history = list(state.history)
        self.turn = state.turn
        self.checkpoints.resume(state.said, state.checkpoint)
        self.meter.call_ids.update(state.call_ids)
        self.notes_board.extend(state.notes)
        for script in self.pool.scripts:
            for who, n in state.script_replies.get(f"scripted:{script.path}", {}).items():
                script.cursors[who] = script.cursors.get(who, 0) + n
        self.inbox.put_first([HumanMessage("say", t) for t in state.pending])

    @classmethod
    async def resume(cls, store: Store, thread_id: str, **kwargs: Any) -> Conversation:
        """Rebuild a stored conversation: its team, its history, and where its team stood."""
        from ._resume import load

        row = await store.get_thread(thread_id)
        if row is None:
            raise ConfigError(f"no stored conversation {thread_id!r}")
        kwargs.setdefault("model", row.model or None)
        conv = cls(row.team, **kwargs)
        conv.restore_state(await load(store, thread_id, conv.role_models))
        conv.attach(store, thread_id)
        return conv

    # -- runs ----------------------------------------------------------------------------------------

    @property
    def current_run(self) -> Run | None:
        """The run in progress, or the last one once it has ended; None before the first."""
        return self._run

    @property
    def running(self) -> bool:
        return self._run is not None and self._run.result is None

    def start(self, task: str, *, author: str = "") -> Run:
        """Start a run with `task` (or continue the conversation with it). Needs a running event loop."""
        if not task or not task.strip():
            raise ConfigError(
                'the task is empty: say what the team should do, e.g. "Summarise Q3 sales by region"'
            )
        task = human_text(task, "task")
        if self.running:
            raise RunStateError("a run is already in progress on this conversation: use say() to add to it")
        return self._begin(task, carried=False, author=author)

    def carry_on(self, task: str) -> Run:
        """Go on with the run the stored thread left unfinished (the process driving it died): the team continues
        from its last checkpoint, nothing new said to it; `task` is the unfinished run's task, for the record."""
        if self.running:
            raise RunStateError("a run is already in progress on this conversation")
        return self._begin(task, carried=True)

    def _begin(self, task: str, *, carried: bool, author: str = "") -> Run:
        from .run import Run

        self._run = Run(self, task, carried=carried, author=author)
        self._run.begin()
        observe(self._run)  # OpenTelemetry spans of the run when the OTEL_* variables say so; else nothing
        return self._run

    def say(self, text: str, *, author: str = "") -> Run:
        """Add a human message (`author`: who typed it): to the run in progress, or as a new run when idle."""
        if self._run is not None and self.running:
            self._run.say(text, author=author)
            return self._run
        return self.start(text, author=author)

    async def release(self) -> None:
        """End the MCP servers' sessions while nobody is using the conversation (a stdio server's process exits);
        the next tool call starts its server again. The web chat calls this when a page leaves an idle chat."""
        if self._root is self and not self.running:
            await self.mcp.close()

    async def close(self) -> None:
        """Stop the run in progress, end the MCP servers' sessions (a stdio server's process exits) and
        close the model clients."""
        if self._run is not None and self._run.result is None:
            self._run.stop()
            await self._run.wait()
        if self._root is self:
            await self.mcp.close()
            await self.pool.close()
