"""The `parley` command as a user types it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from parley.cli import main

Write = Callable[[str, str], Path]
ROOT = Path(__file__).resolve().parent.parent
PARLEY = str(Path(sys.executable).parent / "parley")


def _parley(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    full_env.update(env or {})
    return subprocess.run(
        [PARLEY, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )


def test_scripted_round_robin_reproduces_the_script(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    script = write(
        "s.yaml",
        """
        roles:
          researcher: ["Churn costs five times more than retention."]
          writer: ["# Track churn\\nIt is cheaper to keep customers."]
          editor: ["Clear and accurate. APPROVE"]
    """,
    )
    code = main(["run", "content-studio", "Write about churn", "--model", f"scripted:{script}"])
    out = capsys.readouterr().out
    assert code == 0
    assert "[1] researcher: Churn costs five times more than retention." in out
    assert "[2] writer: # Track churn\nIt is cheaper to keep customers." in out
    assert "[3] editor: Clear and accurate. APPROVE" in out
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("── Finished: editor said APPROVE · 3 turns · ")
    assert "prompt +" in summary and "completion tokens" in summary and "$0.0000" in summary


def test_scripted_selector_json_lines_with_a_real_tool_and_selector_tokens(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    script = write(
        "s.yaml",
        """
        roles:
          analyst:
            - tool: sql_query
              args: {query: "SELECT region, SUM(revenue) AS revenue FROM sales WHERE quarter = '2025-Q3' GROUP BY region ORDER BY region"}
            - "EMEA led Q3."
          risk_check: ["EMEA concentration is a risk."]
          presenter: ["Slide 1: EMEA leads Q3"]
          reviewer: ["Numbers match. APPROVE"]
        selector: [analyst, analyst, presenter, reviewer]
    """,
    )
    code = main(
        ["run", "q3-sales-review", "Summarise Q3 sales by region", "--model", f"scripted:{script}", "--json"]
    )
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 0
    assert all({"type", "source", "content", "turn"} <= set(ev) for ev in lines)
    assert not any(ev["type"] == "chunk" for ev in lines)
    messages = [(ev["source"], ev["turn"]) for ev in lines if ev["type"] == "message"]
    # risk_check is event-driven: it wakes on the analyst's figures, without the selector.
    assert messages == [("analyst", 1), ("analyst", 2), ("risk_check", 3), ("presenter", 4), ("reviewer", 5)]
    call = next(ev for ev in lines if ev["type"] == "tool_call")
    assert call["name"] == "sql_query" and "2025-Q3" in call["arguments"]["query"]
    result_ev = next(ev for ev in lines if ev["type"] == "tool_result")
    assert "EMEA" in result_ev["content"] and "APAC" in result_ev["content"] and not result_ev["is_error"]
    assert [ev["content"] for ev in lines if ev["type"] == "speaker_selected"] == [
        "analyst",
        "analyst",
        "presenter",
        "reviewer",
    ]
    final = lines[-1]
    assert final["type"] == "result"
    assert {"stop_reason", "turns", "prompt_tokens", "completion_tokens", "cost_usd"} <= set(final)
    assert final["stop_reason"] == "stop_text" and final["turns"] == 5 and final["cost_usd"] == 0.0
    usage = [ev for ev in lines if ev["type"] == "usage"]
    selector_prompt = sum(ev["prompt_tokens"] for ev in usage if ev["source"] == "selector")
    assert selector_prompt > 0
    assert final["prompt_tokens"] == sum(ev["prompt_tokens"] for ev in usage)
    assert final["completion_tokens"] == sum(ev["completion_tokens"] for ev in usage)


def test_max_turns_override(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    script = write(
        "s.yaml",
        """
        roles:
          planner: ["step one", "step two"]
          coder: ["def f(): pass"]
          reviewer: ["needs tests"]
    """,
    )
    code = main(
        ["run", "software-task", "Write f", "--model", f"scripted:{script}", "--max-turns", "2", "--json"]
    )
    final = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert code == 0 and final["stop_reason"] == "max_turns" and final["turns"] == 2


def test_teams_lists_valid_and_broken_from_every_directory(write: Write, tmp_path: Path) -> None:
    write(
        "extra/broken.yaml",
        "name: broken\npattern: round_robin\nroles:\n  - name: a\n    prompt: x\n    tools: [nope]\n",
    )
    write(
        "more/fine.yaml",
        "name: fine-team\ndescription: A fine team\npattern: round_robin\nroles: [{name: a, prompt: x}]\n",
    )
    proc = _parley("teams", "--teams", str(tmp_path / "more"), env={"PARLEY_TEAMS": str(tmp_path / "extra")})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(
        line.startswith("content-studio") and "round_robin" in line and "[researcher, writer, editor]" in line
        for line in lines
    )
    assert any(line.startswith("fine-team") and "A fine team" in line for line in lines)
    broken = next(line for line in lines if line.startswith("broken"))
    assert "BROKEN" in broken and "broken.yaml:6: roles[0].tools[0]: unknown tool 'nope'" in broken


def test_validate_exit_codes(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    good = write("good.yaml", "name: good\npattern: round_robin\nroles: [{name: a, prompt: x}]\n")
    bad = write("bad.yaml", "name: bad\npattern: round_robin\nrole: []\n")
    assert main(["teams", "--validate", str(good)]) == 0
    assert main(["teams", "--validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:3: role: unknown key 'role' (did you mean 'roles'?)" in out
    assert f"{bad}:1: roles: required field 'roles' is missing" in out


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["run", "no-such-team", "x"], 2, "unknown team 'no-such-team'"),
        (["run", "content-studo", "x"], 2, "did you mean 'content-studio'?"),
        (["run", "content-studio", "x", "--model", "gpt-4o"], 2, "unknown model backend 'gpt-4o'"),
        (
            ["run", "content-studio", "x", "--model", "openai:gpt-4o-mini"],
            2,
            "set the OPENAI_API_KEY environment variable",
        ),
        (
            ["run", "content-studio", "x", "--model", "anthropic:claude-3-5-haiku-latest"],
            2,
            "ANTHROPIC_API_KEY",
        ),
        (["run", "content-studio", "   ", "--model", "scripted:tests/data/none.yaml"], 2, "no such file"),
        (["run", "content-studio", "--max-turns", "0", "x"], 2, "must be at least 1"),
    ],
)
def test_bad_input_is_one_clear_line_never_a_traceback(args: list[str], code: int, message: str) -> None:
    proc = _parley(*args)
    assert proc.returncode == code
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_empty_task_and_broken_yaml(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    script = write("s.yaml", "roles: {}\n")
    assert main(["run", "content-studio", "  ", "--model", f"scripted:{script}"]) == 2
    assert "the task is empty" in capsys.readouterr().err
    team = write("t.yaml", "name: t\npattern: round_robin\nroles:\n  - name: a\n   prompt: x\n")
    assert main(["run", str(team), "hello"]) == 2
    assert f"{team}:5: invalid YAML" in capsys.readouterr().err


def test_run_error_keeps_the_original_message(write: Write) -> None:
    script = write("s.yaml", "roles:\n  researcher: ['only one reply']\n")
    proc = _parley("run", "content-studio", "Write", "--model", f"scripted:{script}")
    assert proc.returncode == 1
    assert "parley: Stopped by an error: ScriptExhaustedError" in proc.stderr
    assert (
        "writer ran past the end of its script at its turn 1 (the script gives it 0 replies)" in proc.stderr
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "[1] researcher: only one reply" in proc.stdout
    assert "error in writer: ScriptExhaustedError" in proc.stdout


def test_tools_lists_grants() -> None:
    proc = _parley("tools")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("sql_query"))
    assert "data" in lines[i]
    assert "customer-support.billing" in lines[i + 1] and "q3-sales-review.analyst" in lines[i + 1]


def test_budget_and_timeout_exit_codes(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    words = " ".join(["word"] * 80)
    script = write(
        "s.yaml",
        f"""
        roles:
          planner: ["{words}", "{words}"]
          coder: ["{words}", "{words}"]
          reviewer: ["{words}", "{words}"]
    """,
    )
    assert main(["run", "software-task", "x", "--model", f"scripted:{script}", "--max-tokens", "300"]) == 3
    assert "parley: Token budget reached: token budget of 300 reached (" in capsys.readouterr().err
    slow = write("slow.yaml", "roles:\n  planner: ['a slow plan']\ndelay_s: 60\n")
    assert main(["run", "software-task", "x", "--model", f"scripted:{slow}", "--timeout", "0.2"]) == 4
    assert "parley: Time limit reached: wall-clock limit of 0.2 s reached" in capsys.readouterr().err


def test_parley_model_environment_is_the_default(
    write: Write, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    script = write("s.yaml", "roles:\n  planner: ['plan from the environment']\n")
    monkeypatch.setenv("PARLEY_MODEL", f"scripted:{script}")
    assert main(["run", "software-task", "x", "--max-turns", "1"]) == 0
    assert "[1] planner: plan from the environment" in capsys.readouterr().out


LEAKY = """
    roles:
      triage:
        - "I ran SELECT * FROM orders and see order 1042 shipped."
        - "Our sqlite table orders says 1042 shipped."
    selector: [triage]
"""


def test_an_escalation_is_settled_from_the_command_line_and_exported(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    script = write("s.yaml", LEAKY)
    args = [
        "run",
        "customer-support",
        "Where is order 1042?",
        "--model",
        f"scripted:{script}",
        "--max-turns",
        "1",
    ]
    assert main([*args, "--on-escalation", "choose:1"]) == 0
    out, err = capsys.readouterr()
    assert "✗ triage's answer fails its checks (attempt 1 of 2): the reply exposes internal details" in out
    assert "‼ escalation (validation): triage's answer still fails its checks after 1 correction" in out
    assert "escalation settled by cli: position 1 chosen (triage)" in out  # whose position it was
    run_id = err.split("saved as ")[1].split()[0]

    assert main(["audit", run_id, "--format", "jsonl"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["who"], r["what"], r["decision"]) for r in records] == [
        ("user", "task", "delivered"),
        ("triage", "validation", "failed"),
        ("triage", "validation", "failed"),
        ("triage", "escalation", "waiting"),
        ("cli", "escalation resolved", "choose"),
    ]
    assert [r["run"] for r in records] == [1] * 5 and records[1]["turn"] == 1
    assert main(["audit", run_id]) == 0
    table = capsys.readouterr().out
    assert table.startswith(f"# Audit trail of {run_id} (customer-support)")
    assert "| 5 | 1 | 1 |" in table and "| cli | escalation resolved | choose |" in table


def test_without_a_human_an_escalation_ends_the_run_with_exit_5(
    write: Write, capsys: pytest.CaptureFixture[str]
) -> None:
    script = write("s.yaml", LEAKY)
    code = main(
        [
            "run",
            "customer-support",
            "Where is order 1042?",
            "--model",
            f"scripted:{script}",
            "--max-turns",
            "1",
        ]
    )
    _, err = capsys.readouterr()
    assert code == 5
    assert "no human at the terminal; the escalation stays open" in err
    assert "parley: Stopped with a decision left open: an escalation was left open" in err
    assert main(["audit", "no-such-run"]) == 2
    assert "no stored conversation 'no-such-run'" in capsys.readouterr().err


def test_the_terminal_says_how_a_run_ended_in_words(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    script = write(
        "s.yaml",
        """
        roles:
          planner: ["Plan: one function."]
          coder: ["def f(): return 1"]
    """,
    )
    code = main(
        ["run", "software-task", "Write f", "--model", f"scripted:{script}", "--max-turns", "2", "--no-save"]
    )
    out, err = capsys.readouterr()
    assert code == 0 and "max_turns" not in err
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("── Turn limit reached: reached 2 turns · 2 turns · ")
    assert "max_turns" not in out and "stopped:" not in out
    stopped = write("stop.yaml", "roles:\n  planner: ['a slow plan']\ndelay_s: 60\n")
    assert (
        main(["run", "software-task", "x", "--model", f"scripted:{stopped}", "--timeout", "0.2", "--no-save"])
        == 4
    )
    out, err = capsys.readouterr()
    assert (
        out.strip().splitlines()[-1].startswith("── Time limit reached: wall-clock limit of 0.2 s reached · ")
    )
    assert err.strip().splitlines()[-1] == "parley: Time limit reached: wall-clock limit of 0.2 s reached"
    assert "timeout:" not in out + err


def test_the_command_starts_without_loading_the_engine() -> None:
    """`parley ui`, `parley users` and `parley --help` start in under a second: the CLI loads the engine, AutoGen and
    MCP only for the commands that run a team (a fresh interpreter tells what importing the CLI loads)."""
    code = (
        "import sys, parley, parley.cli; "
        "print([m for m in ('parley.conversation', 'autogen_agentchat', 'autogen_core', 'mcp') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]", done.stdout + done.stderr
    # and the package's names still come when asked for
    done = subprocess.run(
        [sys.executable, "-c", "import parley; print(parley.Conversation.__module__, len(dir(parley)) > 38)"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout.split() == ["parley.conversation", "True"]


def test_every_name_the_package_lists_is_one_it_offers() -> None:
    """`parley.__all__`, the names imported on first use and the type checker's imports are three lists: the first
    two must agree, and each name must import."""
    import parley

    exports = parley._EXPORTS  # pyright: ignore[reportPrivateUsage] - the package's own table, checked here
    assert list(exports) == parley.__all__
    assert all(getattr(parley, name) is not None for name in parley.__all__)


def test_a_process_that_runs_conversations_spares_its_imports_and_spaces_out_full_collections() -> None:
    """`freeze_startup_objects` (the web chat, `parley run`, `parley eval`, workers): what the imports made is out of
    the collector's way, and full collections (a pause of the whole process, growing with its live conversations)
    come at most every `FULL_COLLECTION_AFTER` middle-generation ones; calling it twice changes nothing more. In a process of its
    own: the setting is process-wide."""
    code = (
        "import gc, parley.conversation; from parley._proc import freeze_startup_objects as f; "
        "young = gc.get_threshold()[:2]; f(); "
        "frozen = gc.get_freeze_count(); f(); "
        "print(frozen > 10_000, gc.get_freeze_count() == frozen, gc.get_threshold()[:2] == young, gc.get_threshold()[2])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.split() == ["True", "True", "True", "100"], done.stdout + done.stderr
