"""Each orchestration pattern's defining behaviour, with the scripted model."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from _support import collect, team_yaml

from parley import Conversation
from parley.events import (
    ChunkEvent,
    EscalationEvent,
    Event,
    HumanMessageEvent,
    MessageEvent,
    RunResult,
    SubtaskEvent,
    TriggerEvent,
)

Write = Callable[[str, str], Path]


def _said(events: list[Event]) -> list[tuple[str, str]]:
    return [(e.source, e.content) for e in events if isinstance(e, MessageEvent)]


async def test_sequential_runs_each_stage_once_in_order_and_each_sees_the_earlier_ones(write: Write) -> None:
    team = write("team.yaml", team_yaml("sequential", roles=("research", "analyse", "write", "review")))
    script = write(
        "s.yaml",
        """
        roles:
          research: ["facts: churn 3%"]
          analyse: ["analysis: churn is rising"]
          write: ["draft: churn rose to 3%"]
          review: ["approved draft"]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Report on churn"))
    assert [s for s, _ in _said(events)] == ["research", "analyse", "write", "review"]
    assert events[-1].stop_reason == "completed"  # type: ignore[union-attr]
    review_prompt = " ".join(str(m.content) for m in conv.pool.scripts[0].calls[-1].messages)
    assert "facts: churn 3%" in review_prompt and "draft: churn rose to 3%" in review_prompt


async def test_sequential_takes_an_interjection_at_the_next_stage(write: Write) -> None:
    team = write("team.yaml", team_yaml("sequential", roles=("research", "write", "review")))
    script = write(
        "s.yaml",
        """
        roles:
          research: ["facts gathered over a long answer"]
          write: ["draft for EMEA"]
          review: ["ok"]
        delay_s: 0.2
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    said = False

    def interject(ev: Event) -> None:
        nonlocal said
        if isinstance(ev, ChunkEvent) and not said:
            said = True
            conv.say("only EMEA")

    events = await collect(conv.start("Report"), interject)
    order = [(e.type, e.source) for e in events if isinstance(e, MessageEvent | HumanMessageEvent)]
    assert order == [
        ("human_message", "user"),
        ("message", "research"),
        ("human_message", "user"),
        ("message", "write"),
        ("message", "review"),
    ]
    write_prompt = [
        str(m.content) for m in next(c for c in conv.pool.scripts[0].calls if c.who == "write").messages
    ]
    assert "only EMEA" in write_prompt


async def test_fanout_branches_run_in_parallel_and_the_join_waits_for_all(write: Write) -> None:
    team = write(
        "team.yaml",
        team_yaml("fanout", roles=("legal", "finance", "tech", "synth")) + "fanout: {join: synth}\n",
    )
    script = write(
        "s.yaml",
        """
        roles:
          legal: ["legal view"]
          finance: ["finance view"]
          tech: ["tech view"]
          synth: ["all three agree"]
        delay_s: 0.6
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Should we launch?"))
    said = _said(events)
    assert {s for s, _ in said[:3]} == {"legal", "finance", "tech"} and said[3] == (
        "synth",
        "all three agree",
    )
    # Branches overlap: their streamed chunks interleave before any branch has finished.
    first_message = next(i for i, e in enumerate(events) if isinstance(e, MessageEvent))
    streaming = {e.source for e in events[:first_message] if isinstance(e, ChunkEvent)}
    assert streaming == {"legal", "finance", "tech"}
    synth_prompt = " ".join(str(m.content) for m in conv.pool.scripts[0].calls[-1].messages)
    assert all(v in synth_prompt for v in ("legal view", "finance view", "tech view"))


async def test_loop_exits_on_approval_or_after_max_rounds(write: Write) -> None:
    team = write(
        "team.yaml", team_yaml("loop", roles=("writer", "critic")) + "loop: {until: APPROVE, max_rounds: 3}\n"
    )
    approving = write(
        "a.yaml",
        """
        roles:
          writer: ["draft 1", "draft 2"]
          critic: ["too long", "good. APPROVE"]
    """,
    )
    events = await collect(Conversation(team, model=f"scripted:{approving}").start("Write"))
    assert _said(events) == [
        ("writer", "draft 1"),
        ("critic", "too long"),
        ("writer", "draft 2"),
        ("critic", "good. APPROVE"),
    ]
    assert events[-1].stop_reason == "stop_text"  # type: ignore[union-attr]
    never = write(
        "n.yaml",
        """
        roles:
          writer: ["d1", "d2", "d3", "d4"]
          critic: ["no", "still too long", "not yet", "no"]
    """,
    )
    events = await collect(Conversation(team, model=f"scripted:{never}").start("Write"))
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "max_turns" and result.turns == 6


async def test_swarm_follows_handoffs_including_to_the_human(write: Write) -> None:
    team = write(
        "team.yaml",
        """
        name: swarm-team
        pattern: swarm
        roles:
          - {name: triage, prompt: Route requests., handoffs: [billing, user]}
          - {name: billing, prompt: Handle billing., handoffs: [triage, user]}
        termination: {max_turns: 6}
    """,
    )
    script = write(
        "s.yaml",
        """
        roles:
          triage:
            - tool: transfer_to_billing
          billing:
            - "Which order is it?"
            - tool: transfer_to_user
            - "Refund for order 1042 is on its way."
            - tool: transfer_to_user
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("I was charged twice"))
    speakers = [s for s, _ in _said(events)]
    assert speakers[:2] == ["triage", "billing"]
    assert events[-1].stop_reason == "handoff"  # type: ignore[union-attr]
    events = await collect(conv.start("Order 1042"))
    assert _said(events)[0] == ("billing", "Refund for order 1042 is on its way.")


async def test_hierarchical_manager_delegates_subtasks_and_integrates_the_answers(write: Write) -> None:
    team = write(
        "team.yaml",
        team_yaml(
            "hierarchical",
            roles=("editor", "researcher", "writer"),
            max_turns=12,
            stop_text="DONE",
            stop_from=("editor",),
        )
        + "hierarchical: {manager: editor}\n",
    )
    script = write(
        "s.yaml",
        """
        roles:
          editor:
            - calls:
                - {tool: researcher, args: {task: "Find Q3 revenue"}}
                - {tool: writer, args: {task: "Draft an intro"}}
            - tool: writer
              args: {task: "Write the piece with: revenue 4.2M"}
            - "Q3 piece ready: revenue 4.2M. DONE"
          researcher: ["Q3 revenue: 4.2M"]
          writer: ["Intro: a strong quarter.", "Q3 was strong: 4.2M revenue."]
        delay_s: 0.3
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Write about Q3"))
    subtasks = [e for e in events if isinstance(e, SubtaskEvent)]
    started = [(e.worker, e.task) for e in subtasks if e.status == "started"]
    assert started == [
        ("researcher", "Find Q3 revenue"),
        ("writer", "Draft an intro"),
        ("writer", "Write the piece with: revenue 4.2M"),
    ]
    done = {e.subtask_id: e.content for e in subtasks if e.status == "done"}
    assert [done[e.subtask_id] for e in subtasks if e.status == "started"] == [
        "Q3 revenue: 4.2M",
        "Intro: a strong quarter.",
        "Q3 was strong: 4.2M revenue.",
    ]
    # The first two sub-tasks ran at the same time: both started before either finished.
    order = [(e.status, e.worker) for e in subtasks]
    assert order[:2] == [("started", "researcher"), ("started", "writer")]
    # Each worker's answer is its own turn, shown as it is written; the manager integrates at the end.
    assert _said(events)[-1] == ("editor", "Q3 piece ready: revenue 4.2M. DONE")
    assert {"researcher", "writer"} <= {e.source for e in events if isinstance(e, ChunkEvent)}
    # The manager saw what the workers returned before it wrote the final answer.
    last_editor_call = [c for c in conv.pool.scripts[0].calls if c.who == "editor"][-1]
    assert "Q3 was strong: 4.2M revenue." in " ".join(str(m.content) for m in last_editor_call.messages)
    assert events[-1].stop_reason == "stop_text"  # type: ignore[union-attr]


async def test_event_driven_role_wakes_on_its_trigger_not_on_a_schedule(write: Write) -> None:
    text = team_yaml("round_robin", roles=("analyst", "writer", "risk"), max_turns=5).replace(
        "    prompt: You are risk.\n", "    prompt: You are risk.\n    on: [analyst finished, tool failed]\n"
    )
    team = write("team.yaml", text)
    script = write(
        "s.yaml",
        """
        roles:
          analyst: ["EMEA fell 10% in Q3", {tool: calculate, args: {expression: "1/0"}}]
          writer: ["Report: EMEA fell 10%", "Report, final"]
          risk: ["Risk: EMEA decline is a concentration risk", "Risk: the calculation failed, check the inputs"]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Review Q3"))
    said = [s for s, _ in _said(events)]
    assert said == ["analyst", "risk", "writer", "analyst", "risk"]
    triggers = [(e.role, e.on) for e in events if isinstance(e, TriggerEvent)]
    assert triggers == [("risk", "analyst finished"), ("risk", "tool failed")]
    # The writer saw the risk checker's answer: it joined the conversation.
    writer_call = next(c for c in conv.pool.scripts[0].calls if c.who == "writer")
    assert "concentration risk" in " ".join(str(m.content) for m in writer_call.messages)


def _disagreeing_loop(write: Write) -> tuple[Path, Path]:
    """A writer and a critic who agree only in the second round, in a loop of one round that escalates."""
    team = write(
        "team.yaml",
        team_yaml("loop", roles=("writer", "critic"), max_turns=10)
        + "loop: {until: APPROVE, max_rounds: 1, on_max_rounds: escalate}\n",
    )
    script = write(
        "s.yaml",
        """
        roles:
          writer: ["draft 1", "draft 2"]
          critic: ["too long", "good. APPROVE"]
    """,
    )
    return team, script


async def test_a_loop_without_agreement_escalates_and_the_human_settles_it(write: Write) -> None:
    team, script = _disagreeing_loop(write)
    conv = Conversation(team, model=f"scripted:{script}")
    run = conv.start("Write")
    answers = iter([{"proceed": True}])

    def on_event(ev: Event) -> None:
        if isinstance(ev, EscalationEvent):
            assert ev.kind == "disagreement"
            assert [(p.who, p.text) for p in ev.positions] == [("writer", "draft 1"), ("critic", "too long")]
            run.resolve(ev.escalation_id, **next(answers))  # type: ignore[arg-type]

    events = await collect(run, on_event)  # the human let them go on: one more round, and the critic approves
    assert [s for s, _ in _said(events)] == ["writer", "critic", "writer", "critic"]
    assert events[-1].stop_reason == "stop_text"  # type: ignore[union-attr]

    conv = Conversation(team, model=f"scripted:{script}")
    run = conv.start("Write")
    answers = iter([{"choose": 1}])
    events = await collect(run, on_event)  # the human took the writer's draft as it stands
    result = events[-1]
    assert (
        isinstance(result, RunResult) and result.content == "draft 1" and "settled by user" in result.detail
    )
    assert [s for s, _ in _said(events)] == ["writer", "critic"]


async def test_hierarchical_manager_delegates_to_a_whole_sub_team(write: Write) -> None:
    write(
        "sub.yaml",
        team_yaml("sequential", roles=("researcher", "writer")).replace("name: test-team", "name: desk"),
    )
    team = write(
        "team.yaml",
        """
        name: newsroom
        pattern: hierarchical
        hierarchical: {manager: chief}
        roles:
          - {name: chief, prompt: You run the newsroom.}
          - {name: desk, team: sub.yaml, description: Researches and writes a story}
        termination: {max_turns: 6, stop_text: DONE, stop_from: [chief]}
    """,
    )
    script = write(
        "s.yaml",
        """
        roles:
          chief:
            - tool: desk
              args: {task: "A story on Q3 churn"}
            - "Story approved. DONE"
          researcher: ["churn rose to 3%"]
          writer: ["Churn rose to 3% in Q3."]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Cover Q3 churn"))
    subtasks = [(e.worker, e.status, e.content) for e in events if isinstance(e, SubtaskEvent)]
    assert subtasks == [
        ("desk", "started", "A story on Q3 churn"),
        ("desk", "done", "Churn rose to 3% in Q3."),
    ]
    # The sub-team's own pipeline ran inside the delegation, each of its roles shown as it spoke.
    assert _said(events) == [
        ("researcher", "churn rose to 3%"),
        ("writer", "Churn rose to 3% in Q3."),
        ("chief", "Story approved. DONE"),
    ]
    assert events[-1].stop_reason == "stop_text"  # type: ignore[union-attr]


def _on(text: str, role: str, on: str, extra: str = "") -> str:
    """A team text with `role` made event-driven (woken by `on`)."""
    return text.replace(
        f"    prompt: You are {role}.\n", f"    prompt: You are {role}.\n    on: [{on}]\n{extra}"
    )


async def test_stage_finished_wakes_its_role_after_each_scheduled_role(write: Write) -> None:
    team = write(
        "team.yaml",
        _on(
            team_yaml("round_robin", roles=("research", "write", "monitor"), max_turns=4),
            "monitor",
            "stage finished",
        ),
    )
    script = write(
        "s.yaml",
        """
        roles:
          research: ["facts: churn 3%"]
          write: ["draft: churn rose to 3%"]
          monitor: ["monitor: research looks sourced", "monitor: the draft matches the facts"]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Report on churn"))
    assert [s for s, _ in _said(events)] == ["research", "monitor", "write", "monitor"]
    assert [(e.role, e.on) for e in events if isinstance(e, TriggerEvent)] == [
        ("monitor", "stage finished"),
        ("monitor", "stage finished"),
    ]
    assert events[-1].stop_reason == "max_turns"  # type: ignore[union-attr]


async def test_validation_failed_wakes_its_role(write: Write) -> None:
    rules = "    validate: {not_contains: [lorem], retries: 1}\n"
    text = team_yaml("round_robin", roles=("writer", "editor"), max_turns=2).replace(
        "    prompt: You are writer.\n", "    prompt: You are writer.\n" + rules
    )
    team = write("team.yaml", _on(text, "editor", "validation failed"))
    script = write(
        "s.yaml",
        """
        roles:
          writer: ["lorem ipsum", "A clean draft."]
          editor: ["editor: the first draft had filler text; the second is fine"]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Draft the note"))
    assert [(e.role, e.on) for e in events if isinstance(e, TriggerEvent)] == [
        ("editor", "validation failed")
    ]
    assert [s for s, _ in _said(events)] == ["writer", "editor"]


async def test_file_written_wakes_its_role(write: Write) -> None:
    text = team_yaml(
        "round_robin", roles=("writer", "checker"), max_turns=3, tools={"writer": ["write_file"]}
    )
    team = write("team.yaml", _on(text, "checker", "file written"))
    script = write(
        "s.yaml",
        """
        roles:
          writer:
            - tool: write_file
              args: {path: notes.md, content: "Q3 notes"}
            - "Notes written."
          checker: ["checker: notes.md is there and non-empty"]
    """,
    )
    conv = Conversation(team, model=f"scripted:{script}")
    events = await collect(conv.start("Write the notes"))
    assert [(e.role, e.on) for e in events if isinstance(e, TriggerEvent)] == [("checker", "file written")]
    assert "checker" in [s for s, _ in _said(events)]


async def test_an_interrupt_while_a_loop_waits_on_its_escalation_goes_to_the_team(write: Write) -> None:
    team, script = _disagreeing_loop(write)
    conv = Conversation(team, model=f"scripted:{script}")
    run = conv.start("Write")
    escalations = []

    def on_event(ev: Event) -> None:
        if isinstance(ev, EscalationEvent):
            escalations.append(ev)
            if len(escalations) == 1:
                run.interrupt("Keep it under 50 words")  # the human speaks instead of deciding
            else:
                run.resolve(ev.escalation_id, proceed=True)

    events = await collect(run, on_event)
    result = events[-1]
    assert isinstance(result, RunResult) and result.stop_reason == "stop_text"
    humans = [e.content for e in events if isinstance(e, HumanMessageEvent)]
    assert humans == ["Write", "Keep it under 50 words"]  # the interruption reached the team
    # It did not settle the first escalation: that stays open on record, and the loop asked again.
    assert len(escalations) == 2
