"""Team files: every shipped team is valid; every mistake is reported with file, line and field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from parley import TeamFileError, discover_teams, load_team_file
from parley.spec import PATTERNS
from parley.tools import default_registry

Write = Callable[[str, str], Path]
ROOT = Path(__file__).resolve().parent.parent


def _problems(path: Path) -> list[str]:
    with pytest.raises(TeamFileError) as info:
        load_team_file(path, tool_names=default_registry().names(), display=path.name)
    return str(info.value).splitlines()


def test_every_shipped_team_is_valid_and_patterns_are_covered() -> None:
    entries = [e for e in discover_teams() if e.path.parent == ROOT / "teams"]
    assert [e.error for e in entries if e.error] == []
    specs = {e.name: e.spec for e in entries}
    assert {"content-studio", "customer-support", "q3-sales-review", "software-task"} <= set(specs)
    assert {s.pattern for s in specs.values() if s} == set(PATTERNS)
    for spec in specs.values():
        assert spec is not None and spec.starters, f"{spec} needs starters for the UI"
        assert all(spec.prompts[r.name] for r in spec.roles)


def test_unknown_key_gets_line_and_suggestion(write: Write) -> None:
    path = write(
        "t.yaml",
        """
        name: t
        pattern: round_robin
        roles:
          - name: a
            prompt: hi
            tool: [sql_query]
    """,
    )
    assert _problems(path) == ["t.yaml:6: roles[0].tool: unknown key 'tool' (did you mean 'tools'?)"]


def test_a_key_in_the_wrong_place_says_where_it_belongs(write: Write) -> None:
    path = write(
        "t.yaml",
        """
        name: t
        pattern: round_robin
        max_turns: 6
        roles:
          - name: a
            prompt: hi
            stop_text: DONE
        termination:
          model: openai:gpt-4o-mini
    """,
    )
    assert _problems(path) == [
        "t.yaml:7: roles[0].stop_text: 'stop_text' does not belong here: put it under termination:",
        "t.yaml:9: termination.model: 'model' does not belong here: put it under the top level or roles:",
        "t.yaml:3: max_turns: 'max_turns' does not belong here: put it under termination:",
    ]


def test_unknown_tool_role_and_prompt_are_all_reported(write: Write) -> None:
    path = write(
        "t.yaml",
        """
        name: t
        pattern: selector
        roles:
          - name: analyst
            prompt: prompts/nope.md
            tools: [sql_qery]
          - name: analyst
            prompt: inline prompt
        termination:
          stop_text: APPROVE
          stop_from: [reviewr]
    """,
    )
    problems = _problems(path)
    assert any(
        p.startswith("t.yaml:6: roles[0].tools[0]: unknown tool 'sql_qery' (did you mean 'sql_query'?)")
        for p in problems
    )
    assert any(p.startswith("t.yaml:7: roles[1].name: duplicate role name 'analyst'") for p in problems)
    assert any(p.startswith("t.yaml:11: termination.stop_from[0]: unknown role 'reviewr'") for p in problems)
    assert any(
        p.startswith("t.yaml:5: roles[0].prompt: prompt file 'prompts/nope.md' not found") for p in problems
    )
    assert len(problems) == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: t\npattern: round_robin\nroles: [\n", "t.yaml:4: invalid YAML"),
        ("name: t\nname: u\npattern: round_robin\nroles: []\n", "t.yaml:2: name: duplicate key 'name'"),
        (
            "name: t\npattern: ring\nroles: [{name: a, prompt: x}]\n",
            "t.yaml:2: pattern: Input should be 'round_robin', 'selector', 'sequential', 'fanout', 'loop', 'swarm', 'hierarchical' or 'consensus'",
        ),
        (
            "name: t\npattern: round_robin\nroles: [{name: my-role, prompt: x}]\n",
            "t.yaml:3: roles[0].name: role name 'my-role' must be an identifier",
        ),
        (
            "name: t\npattern: round_robin\nroles: [{name: a, prompt: x, model: 'gpt4'}]\n",
            "t.yaml:3: roles[0].model: unknown model backend 'gpt4'",
        ),
        (
            "name: t\npattern: round_robin\nroles: [{name: a, prompt: x}]\ntermination: {max_turns: 0}\n",
            "t.yaml:4: termination.max_turns: Input should be greater than or equal to 1",
        ),
        (
            "pattern: round_robin\nroles: [{name: a, prompt: x}]\n",
            "t.yaml:1: name: required field 'name' is missing",
        ),
        ("", "t.yaml:1: the file is empty"),
        ("- just\n- a list\n", "t.yaml:1: a team file must be a mapping"),
    ],
)
def test_bad_files_name_the_line_and_field(write: Write, text: str, expected: str) -> None:
    path = write("t.yaml", text)
    problems = _problems(path)
    assert any(p.startswith(expected) for p in problems), problems


def test_prompt_file_is_resolved_next_to_the_team(write: Write) -> None:
    write("my_prompt.md", "You are a careful checker.\n")
    path = write("t.yaml", "name: t\npattern: round_robin\nroles: [{name: a, prompt: my_prompt.md}]\n")
    spec = load_team_file(path, tool_names=[])
    assert spec.prompts["a"] == "You are a careful checker."


def test_an_autogen_component_config_is_named_as_such_with_the_command_that_imports_it(
    tmp_path: Path,
) -> None:
    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.teams import RoundRobinGroupChat
    from autogen_ext.models.openai import OpenAIChatCompletionClient

    client = OpenAIChatCompletionClient(model="gpt-4o-mini", api_key="unused")
    team = RoundRobinGroupChat([AssistantAgent("writer", model_client=client)], max_turns=2)
    path = tmp_path / "team.json"
    path.write_text(team.dump_component().model_dump_json(), encoding="utf-8")
    (problem,) = _problems(path)
    assert "AutoGen component config" in problem and f"parley import autogen {path}" in problem


def test_the_catalog_is_parsed_again_only_when_a_team_or_prompt_file_changes(
    write: Write, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every page load and API request asks for the teams: an unchanged catalog is not parsed again, and an edit to a
    team file, a prompt next to it, a new file or a removed one shows on the next ask."""
    import parley.catalog as catalog

    parsed: list[str] = []
    real = catalog.load_entry

    def counting(path: Path, registry: object) -> catalog.TeamEntry:
        parsed.append(path.name)
        return real(path, registry)  # type: ignore[arg-type]

    monkeypatch.setattr(catalog, "load_entry", counting)
    folder = write(
        "mine/t.yaml",
        "name: t\npattern: round_robin\nroles: [{name: a, prompt: p.md}, {name: b, prompt: sub/q.md}]\n",
    ).parent
    write("mine/p.md", "You check.\n")
    write("mine/sub/q.md", "You write.\n")
    monkeypatch.setenv("PARLEY_TEAMS", str(folder))

    def mine() -> dict[str, catalog.TeamEntry]:
        return {e.name: e for e in catalog.current_teams() if e.path.parent == folder}

    assert mine()["t"].spec.prompts["a"] == "You check."  # type: ignore[union-attr]
    first = len(parsed)
    assert mine()["t"].spec is not None and len(parsed) == first  # nothing changed: nothing parsed

    write("mine/p.md", "You check every figure.\n")
    assert mine()["t"].spec.prompts["a"] == "You check every figure."  # type: ignore[union-attr]
    write("mine/sub/q.md", "You write short drafts.\n")  # a prompt in a subfolder is watched too
    assert mine()["t"].spec.prompts["b"] == "You write short drafts."  # type: ignore[union-attr]
    write("mine/u.yaml", "name: u\npattern: round_robin\nroles: [{name: b, prompt: Be brief.}]\n")
    assert set(mine()) == {"t", "u"}
    (folder / "u.yaml").write_text("name: u\npattern: nonsense\n", encoding="utf-8")
    assert mine()["u"].spec is None and "pattern" in (mine()["u"].error or "")  # broken now, and says why
    (folder / "u.yaml").unlink()
    assert set(mine()) == {"t"}
