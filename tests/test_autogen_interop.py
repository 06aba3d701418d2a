"""Moving teams between AutoGen and parley: `parley import autogen` and `parley export autogen`, as a user runs them.

The AutoGen teams are built with autogen-agentchat's own classes and written with its own `dump_component()`; the
exported JSON is loaded back with AutoGen's own `Team.load_component`. No model is ever called: imported teams run
on the scripted model.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from autogen_agentchat import conditions as c
from autogen_agentchat.agents import AssistantAgent, UserProxyAgent
from autogen_agentchat.base import Team
from autogen_agentchat.teams import (
    DiGraphBuilder,
    GraphFlow,
    MagenticOneGroupChat,
    RoundRobinGroupChat,
    SelectorGroupChat,
    Swarm,
)
from autogen_agentchat.tools import AgentTool
from autogen_core.tools import FunctionTool
from autogen_ext.models.openai import OpenAIChatCompletionClient

from parley.catalog import resolve_team
from parley.cli import main

Write = Callable[[str, str], Path]
ROOT = Path(__file__).resolve().parent.parent
PARLEY = str(Path(sys.executable).parent / "parley")


def _parley(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [PARLEY, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _client() -> OpenAIChatCompletionClient:
    return OpenAIChatCompletionClient(model="gpt-4o-mini", api_key="not-a-key")  # never called


def _agent(name: str, system_message: str, **kwargs: Any) -> AssistantAgent:
    return AssistantAgent(name, model_client=_client(), system_message=system_message, **kwargs)


def _dump(team: Any, path: Path) -> Path:
    path.write_text(team.dump_component().model_dump_json(), encoding="utf-8")
    return path


async def kb_search(query: str) -> str:
    """Search the knowledge base."""
    return "nothing"


def get_weather(city: str) -> str:
    """The weather in a city."""
    return "sunny"


def _plant(source: Path, marker: Path) -> None:
    """Make the dumped get_weather's source leave `marker` behind, were it ever run (or imported)."""
    data = json.loads(source.read_text())
    tools = data["config"]["participants"][0]["config"]["workbench"][0]["config"]["tools"]
    planted = f"open({str(marker)!r}, 'w').write('ran')\n"
    tools[1]["config"]["source_code"] = planted + tools[1]["config"]["source_code"].replace(
        "return", planted + "    return"
    )
    tools[1]["config"]["global_imports"] = ["os"]
    source.write_text(json.dumps(data))


def test_a_round_robin_team_dumped_by_autogen_imports_and_runs_with_its_source_code_never_run(
    tmp_path: Path, write: Write
) -> None:
    marker = tmp_path / "tool-ran"
    writer = _agent(
        "writer",
        "You write short drafts.\nKeep them tight.",
        description="Drafts the text",
        tools=[
            FunctionTool(kb_search, description="Search"),
            FunctionTool(get_weather, description="Weather"),
        ],
    )
    editor = _agent("editor", "You edit. Say APPROVE when the draft is ready.", description="Edits the draft")
    team = RoundRobinGroupChat(
        [writer, editor],
        termination_condition=c.MaxMessageTermination(5) | c.TextMentionTermination("APPROVE"),
    )
    source = _dump(team, tmp_path / "studio-team.json")
    _plant(source, marker)
    assert "def get_weather" in source.read_text()  # AutoGen put the tool's source in the JSON

    out = tmp_path / "teams" / "studio-team.yaml"
    out.parent.mkdir()
    imported = _parley("import", "autogen", str(source), "-o", str(out))
    assert imported.returncode == 0, imported.stderr
    assert "tool 'get_weather' of writer skipped" in imported.stderr
    assert "never runs or copies the Python source" in imported.stderr
    assert f"wrote {out} (team studio-team, round_robin, roles writer, editor)" in imported.stderr
    text = out.read_text()
    assert "open(" not in text and "def get_weather" not in text and not marker.exists()
    team_file = yaml.safe_load(text)
    assert team_file["pattern"] == "round_robin" and team_file["model"] == "openai:gpt-4o-mini"
    assert [r["name"] for r in team_file["roles"]] == ["writer", "editor"]
    assert team_file["roles"][0]["tools"] == ["kb_search"]  # parley's own tool of that name
    assert team_file["roles"][0]["prompt"] == "You write short drafts.\nKeep them tight.\n"
    # AutoGen counts the task as a message: five messages are four turns.
    assert team_file["termination"] == {"max_turns": 4, "stop_text": "APPROVE"}

    script = write(
        "s.yaml", "roles:\n  writer: ['Churn costs five times more.']\n  editor: ['Tight. APPROVE']\n"
    )
    ran = _parley("run", str(out), "Write about churn", "--model", f"scripted:{script}", "--no-save")
    assert ran.returncode == 0, ran.stderr
    assert "[1] writer: Churn costs five times more." in ran.stdout
    assert "[2] editor: Tight. APPROVE" in ran.stdout
    assert "Finished: editor said APPROVE" in ran.stdout
    assert not marker.exists()


def _import(source: Path, *args: str) -> int:
    return main(["import", "autogen", str(source), *args])


def _run(team: Path, task: str, script: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["run", str(team), task, "--model", f"scripted:{script}", "--no-save"]) == 0
    return capsys.readouterr().out


def test_a_selector_team_keeps_its_descriptions_and_limits_and_runs(
    tmp_path: Path, write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    team = SelectorGroupChat(
        [
            _agent("analyst", "Compute the figures.", description="Computes figures from the sales data"),
            _agent("writer", "Write the summary. Say DONE at the end.", description="Writes the summary"),
        ],
        model_client=_client(),
        termination_condition=c.TextMentionTermination("DONE")
        | c.TokenUsageTermination(max_total_token=50_000)
        | c.TimeoutTermination(120),
    )
    out = tmp_path / "q3.yaml"
    assert _import(_dump(team, tmp_path / "q3.json"), "-o", str(out)) == 0
    err = capsys.readouterr().err
    assert "parley's default, termination.max_turns: 10, applies" in err  # AutoGen had no message limit
    assert "the selector's prompt and settings left out" in err
    spec = yaml.safe_load(out.read_text())
    assert spec["pattern"] == "selector"
    assert [r["description"] for r in spec["roles"]] == [
        "Computes figures from the sales data",
        "Writes the summary",
    ]
    assert spec["termination"] == {"stop_text": "DONE", "max_tokens": 50_000, "timeout_s": 120}

    script = write(
        "s.yaml",
        "roles:\n  analyst: ['EMEA grew 12%.']\n  writer: ['EMEA led. DONE']\nselector: [analyst, writer]\n",
    )
    shown = _run(out, "Summarise Q3", script, capsys)
    assert "[1] analyst: EMEA grew 12%." in shown and "[2] writer: EMEA led. DONE" in shown
    assert "Finished: writer said DONE" in shown


def test_a_swarm_keeps_its_handoffs_and_hands_back_to_the_user(
    tmp_path: Path, write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    team = Swarm(
        [
            _agent("triage", "Route the case.", handoffs=["billing", "user"]),
            _agent("billing", "Settle charges.", handoffs=["triage", "user"]),
        ],
        termination_condition=c.HandoffTermination("user") | c.MaxMessageTermination(12),
    )
    out = tmp_path / "desk.yaml"
    assert _import(_dump(team, tmp_path / "desk.json"), "-o", str(out)) == 0
    spec = yaml.safe_load(out.read_text())
    assert spec["pattern"] == "swarm"
    assert [r["handoffs"] for r in spec["roles"]] == [["billing", "user"], ["triage", "user"]]
    assert spec["termination"] == {"max_turns": 11}

    script = write(
        "s.yaml",
        """
        roles:
          triage:
            - tool: transfer_to_billing
          billing:
            - "Which of the two charges should I refund?"
            - tool: transfer_to_user
        """,
    )
    shown = _run(out, "I was charged twice", script, capsys)
    assert "[2] billing: Which of the two charges should I refund?" in shown
    assert "Handed back to you" in shown


def test_a_graph_flow_of_branches_joined_by_one_agent_is_a_fanout_and_runs(
    tmp_path: Path, write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    data, risk, reporter = _agent("data", "Figures."), _agent("risk", "Risks."), _agent("reporter", "Brief.")
    graph = DiGraphBuilder()
    for agent in (reporter, data, risk):
        graph.add_node(agent)
    graph.add_edge(data, reporter).add_edge(risk, reporter)
    flow = GraphFlow([reporter, data, risk], graph=graph.build())
    out = tmp_path / "brief.yaml"
    assert _import(_dump(flow, tmp_path / "brief.json"), "-o", str(out)) == 0
    spec = yaml.safe_load(out.read_text())
    assert spec["pattern"] == "fanout" and spec["fanout"] == {"join": "reporter"}
    assert [r["name"] for r in spec["roles"]] == ["data", "risk", "reporter"]
    script = write(
        "s.yaml",
        "roles:\n  data: ['Sales rose 8%.']\n  risk: ['EMEA churn.']\n  reporter: ['Brief: up 8%, watch EMEA.']\n",
    )
    shown = _run(out, "Brief the board", script, capsys)
    assert "data: Sales rose 8%." in shown and "risk: EMEA churn." in shown
    assert "reporter: Brief: up 8%, watch EMEA." in shown

    cycle = DiGraphBuilder()
    for agent in (data, risk, reporter):
        cycle.add_node(agent)
    cycle.add_edge(data, risk).add_edge(risk, data, condition="AGAIN").add_edge(
        risk, reporter, condition="DONE"
    )
    flow = GraphFlow([data, risk, reporter], graph=cycle.set_entry_point(data).build())
    assert _import(_dump(flow, tmp_path / "cycle.json"), "-o", str(tmp_path / "cycle.yaml")) == 2
    assert "config.graph.nodes.risk.edges[0]: a conditional edge" in capsys.readouterr().err


def test_one_agent_calling_agents_as_tools_is_a_hierarchical_team_and_runs(
    tmp_path: Path, write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = _agent("writer", "Write what the manager asks for.", description="Writes drafts")
    manager = _agent(
        "manager", "Plan, delegate, and say PUBLISH.", tools=[AgentTool(writer)], max_tool_iterations=4
    )
    team = RoundRobinGroupChat([manager], termination_condition=c.TextMentionTermination("PUBLISH"))
    out = tmp_path / "desk.yaml"
    assert _import(_dump(team, tmp_path / "desk.json"), "-o", str(out)) == 0
    spec = yaml.safe_load(out.read_text())
    assert spec["pattern"] == "hierarchical"
    assert spec["hierarchical"] == {"manager": "manager", "max_delegations": 4}
    assert [r["name"] for r in spec["roles"]] == ["manager", "writer"]
    script = write(
        "s.yaml",
        """
        roles:
          manager:
            - tool: writer
              args: {task: "Draft two lines on churn"}
            - "Churn costs more than retention. PUBLISH"
          writer: ["Churn costs more than retention."]
        """,
    )
    shown = _run(out, "An article on churn", script, capsys)
    assert "writer" in shown and "Draft two lines on churn" in shown
    assert "manager: Churn costs more than retention. PUBLISH" in shown


def calculator(a: float, b: float, operator: str) -> float:
    """AutoGen Studio's gallery calculator."""
    return a + b


def test_an_autogen_studio_team_record_imports_with_its_gallery_tools(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team = RoundRobinGroupChat(
        [
            _agent("assistant", "Solve tasks.", tools=[FunctionTool(calculator, description="calc")]),
            _agent("b", "B."),
        ],
        termination_condition=c.TextMentionTermination("TERMINATE"),
    )
    record = {
        "id": 3,
        "component": json.loads(team.dump_component().model_dump_json()),
    }  # AutoGen Studio's Team
    source = tmp_path / "studio.json"
    source.write_text(json.dumps(record))
    out = tmp_path / "studio.yaml"
    assert _import(source, "-o", str(out)) == 0
    assert yaml.safe_load(out.read_text())["roles"][0]["tools"] == ["calculate"]
    assert "tool 'calculator' of assistant: granted as parley's own calculate" in capsys.readouterr().err


def test_combined_conditions_map_where_parley_can_keep_their_meaning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = c.MaxMessageTermination(5) & c.MaxMessageTermination(8)  # the later one decides: 7 turns
    team = RoundRobinGroupChat(
        [_agent("a", "A."), _agent("b", "B.")],
        termination_condition=both
        | c.TimeoutTermination(30)
        | c.MaxMessageTermination(7)
        | c.ExternalTermination(),
        max_turns=9,
    )
    out = tmp_path / "t.yaml"
    assert _import(_dump(team, tmp_path / "t.json"), "-o", str(out)) == 0
    assert yaml.safe_load(out.read_text())["termination"] == {"max_turns": 6, "timeout_s": 30}
    assert (
        "ExternalTermination left out: parley's Stop button, /stop and Ctrl-C end a run"
        in capsys.readouterr().err
    )


def test_every_part_without_an_equivalent_is_named_by_its_json_path_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    team = RoundRobinGroupChat(
        [_agent("writer", "W.", handoffs=["editor"]), _agent("editor", "E."), UserProxyAgent("human")],
        termination_condition=(c.MaxMessageTermination(5) & c.TextMentionTermination("APPROVE"))
        | c.SourceMatchTermination(["editor"])
        | c.TokenUsageTermination(max_prompt_token=500),
    )
    data = json.loads(team.dump_component().model_dump_json())
    data["config"]["participants"][1]["config"]["model_client"]["provider"] = "mycorp.models.PrivateClient"
    source = tmp_path / "bad.json"
    source.write_text(json.dumps(data))
    out = tmp_path / "bad.yaml"
    assert _import(source, "-o", str(out)) == 2
    err = capsys.readouterr().err
    assert f"cannot import {source} (nothing was written): 6 parts to change" in err
    expected = {
        "config.participants[0].config.handoffs[0]": "outside a Swarm",
        "config.participants[1].config.model_client": "'mycorp.models.PrivateClient' has no parley equivalent",
        "config.participants[2]": "the human is always part of a parley conversation",
        "config.termination_condition.config.conditions[0].config.conditions[0]": "& (end only when every",
        "config.termination_condition.config.conditions[0].config.conditions[1]": "SourceMatchTermination",
        "config.termination_condition.config.conditions[1].config.max_prompt_token": "use max_total_token",
    }
    for path, words in expected.items():
        assert any(line.strip().startswith(f"{path}: ") and words in line for line in err.splitlines()), path
    assert not out.exists() and list(tmp_path.iterdir()) == [source]  # no half file, no temporary file

    # The model clients, and only they, are settled by choosing parley's model.
    fixable = RoundRobinGroupChat([_agent("a", "A."), _agent("b", "B.")])
    data = json.loads(fixable.dump_component().model_dump_json())
    data["config"]["participants"][0]["config"]["model_client"]["provider"] = "mycorp.models.PrivateClient"
    source.write_text(json.dumps(data))
    assert _import(source, "-o", str(out), "--model", "ollama:qwen2.5") == 0
    assert yaml.safe_load(out.read_text())["model"] == "ollama:qwen2.5"


def _hostile(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.json"
    good = json.loads(
        RoundRobinGroupChat([_agent("a", "A."), _agent("b", "B.")]).dump_component().model_dump_json()
    )
    if kind == "huge":
        good["config"]["participants"][0]["config"]["system_message"] = "x" * 6_000_000
    elif kind == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
        return path
    elif kind == "nested":
        good["config"]["termination_condition"] = {
            "provider": "x",
            "config": json.loads('{"a":' * 80 + "1" + "}" * 80),
        }
    elif kind == "agent-name":
        good["config"]["participants"][0]["config"]["name"] = "../../etc/passwd"
    elif kind == "team-name":
        good["config"]["name"] = "../../.config/evil"
    elif kind == "provider":
        good["provider"] = "evil_pkg.teams.Backdoor"
    elif kind == "magentic":
        good = json.loads(
            MagenticOneGroupChat([_agent("a", "A.")], model_client=_client())
            .dump_component()
            .model_dump_json()
        )
    path.write_text(
        json.dumps(good) if kind != "binary" else "\xff\xfe",
        encoding="utf-8" if kind != "binary" else "latin-1",
    )
    return path


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("huge", "is too big for an AutoGen team config"),
        ("deep", "nested more than 64 levels deep"),
        ("nested", "nested more than 64 levels deep"),
        ("agent-name", "agent name '../../etc/passwd' is not a parley role name"),
        ("team-name", "team name '../../.config/evil' holds a path separator"),
        ("provider", "'evil_pkg.teams.Backdoor' is not a team parley imports"),
        ("magentic", "MagenticOneGroupChat has no parley equivalent"),
        ("binary", "not UTF-8 text"),
    ],
)
def test_hostile_files_are_refused_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, words: str
) -> None:
    source = _hostile(tmp_path, kind)
    assert _import(source, "-o", str(tmp_path / "out.yaml")) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err
    assert not (tmp_path / "out.yaml").exists()


def test_an_existing_team_file_is_replaced_only_with_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _dump(RoundRobinGroupChat([_agent("a", "A."), _agent("b", "B.")]), tmp_path / "t.json")
    out = tmp_path / "mine.yaml"
    out.write_text("name: mine\n")
    assert _import(source, "-o", str(out)) == 2
    assert "exists: pass --force to replace it" in capsys.readouterr().err
    assert out.read_text() == "name: mine\n"
    assert _import(source, "-o", str(out), "--force") == 0
    assert yaml.safe_load(out.read_text())["roles"][0]["name"] == "a"
    assert _import(source, "-o", str(tmp_path), "--force") == 2
    assert f"{tmp_path} is a folder: give a file name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("team", "autogen_team", "termination"),
    [
        (
            "content-studio",
            "RoundRobinGroupChat",
            {"max_turns": 6, "stop_text": "APPROVE", "max_tokens": 60000, "timeout_s": 600},
        ),
        (
            "customer-support",
            "SelectorGroupChat",
            {"max_turns": 8, "stop_text": "RESOLVED", "max_tokens": 60000, "timeout_s": 600},
        ),
        ("support-desk", "Swarm", {"max_turns": 10, "max_tokens": 60000, "timeout_s": 600}),
        ("content-pipeline", "GraphFlow", {"max_turns": 8, "max_tokens": 60000, "timeout_s": 600}),
        ("financial-brief", "GraphFlow", {"max_turns": 6, "max_tokens": 80000, "timeout_s": 900}),
        (
            "editorial-desk",
            "RoundRobinGroupChat",
            {"max_turns": 12, "stop_text": "PUBLISH", "max_tokens": 80000, "timeout_s": 900},
        ),
    ],
)
def test_an_exported_team_loads_in_autogen_and_imports_back(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    team: str,
    autogen_team: str,
    termination: dict[str, Any],
) -> None:
    exported = tmp_path / f"{team}.json"
    assert main(["export", "autogen", team, "-o", str(exported)]) == 0
    err = capsys.readouterr().err
    assert "tools" in err and "left out: they are parley's" in err
    assert "exported with openai:gpt-4o-mini; choose another with --model" in err

    monkeypatch.setenv(
        "OPENAI_API_KEY", "not-a-key"
    )  # AutoGen's client wants one to be built; nothing is called
    loaded = Team.load_component(json.loads(exported.read_text()))
    assert type(loaded).__name__ == autogen_team
    again = json.loads(loaded.dump_component().model_dump_json())
    shipped = resolve_team(team).source
    assert shipped is not None
    parley_team = yaml.safe_load(shipped.read_text())
    agents = again["config"]["participants"]
    if team == "editorial-desk":  # the manager calls the others as tools
        tools = agents[0]["config"]["workbench"][0]["config"]["tools"]
        agents = [agents[0], *(t["config"]["agent"] for t in tools)]
    assert [a["config"]["name"] for a in agents] == [r["name"] for r in parley_team["roles"]]
    assert all(a["config"]["system_message"] for a in agents)

    # What AutoGen wrote back imports as the same team.
    dumped = tmp_path / "again.json"
    dumped.write_text(json.dumps(again))
    out = tmp_path / "again.yaml"
    assert _import(dumped, "-o", str(out), "--name", team) == 0
    back = yaml.safe_load(out.read_text())
    assert back["pattern"] == parley_team["pattern"]
    assert back.get("fanout") == parley_team.get("fanout")
    assert back.get("hierarchical") == parley_team.get("hierarchical")
    assert [r["name"] for r in back["roles"]] == [r["name"] for r in parley_team["roles"]]
    assert [r.get("handoffs") for r in back["roles"]] == [r.get("handoffs") for r in parley_team["roles"]]
    assert back["termination"] == termination


def test_export_refuses_what_autogen_cannot_hold(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "autogen", "investment-committee"]) == 2
    assert "the consensus pattern has no AutoGen team component" in capsys.readouterr().err
    assert main(["export", "autogen", "content-studio", "--model", "local"]) == 2
    assert "'local' has no AutoGen model client" in capsys.readouterr().err


def test_without_o_the_team_goes_into_the_projects_teams_and_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = tmp_path / "project"
    (project / "teams").mkdir(parents=True)
    monkeypatch.setenv("PARLEY_HOME", str(project))
    team = RoundRobinGroupChat([_agent("a", "A."), _agent("b", "B.")])
    team_json = json.loads(team.dump_component().model_dump_json())
    team_json["config"]["name"] = "Studio Team"
    source = tmp_path / "export.json"
    source.write_text(json.dumps(team_json))
    assert _import(source) == 0
    assert (project / "teams" / "studio-team.yaml").is_file()
    assert f'`parley run {project / "teams" / "studio-team.yaml"} "TASK"` runs it' in capsys.readouterr().err
    assert main(["teams"]) == 0
    assert "studio-team" in capsys.readouterr().out
    assert _import(source, "-o", "-") == 0  # printed, checked, and nothing else written
    assert capsys.readouterr().out.startswith(
        "# Imported from AutoGen by `parley import autogen export.json`."
    )
    assert sorted(p.name for p in (project / "teams").iterdir()) == ["studio-team.yaml"]
