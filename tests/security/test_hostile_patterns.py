"""Hostile text against parley's patterns: a model's answer crafted to make a regular expression backtrack, and a
team or suite file whose own pattern or JSON schema would hang the run or reach outside.

- Votes are read with a linear pattern (a vote line padded with 200,000 spaces used to hold the event loop for
  minutes, so not even the run's own timeout could fire).
- A team's `validate: {regex: ...}` and a suite's `final_matches` get at most a second per answer, off the event
  loop; a pattern that takes longer fails with "the pattern took too long on this answer: simplify it".
- A team's `validate: {json_schema: ...}` may only refer inside itself (`#...`): a `$ref` to `http://` or
  `file://` is refused when the team file loads, naming the file and line, and nothing is ever fetched.

Every run here is a real `parley` process with the scripted model; a run still going after SAFETY_NET_S is a run
that hung (not a speed check)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

Write = Callable[[str, str], Path]
PARLEY = str(Path(sys.executable).parent / "parley")
ROOT = Path(__file__).resolve().parents[2]
SAFETY_NET_S = 90
"""Not a speed check: a run still going after this long hung on the hostile text."""
EXIT_CONFIG, EXIT_TIMEOUT, EXIT_ESCALATED = 2, 4, 5
TOO_SLOW = "the pattern took too long on this answer: simplify it"
HOSTILE_VOTE = "I have weighed it.\nVOTE: invest" + " " * 200_000 + "x"
"""Quadratic for the old vote pattern: minutes of event-loop time for this one answer."""
BACKTRACKS = "a" * 60 + "!"
"""An answer on which both patterns below backtrack exponentially in Python's `re`."""
PATTERNS = {
    # Instant for the `regex` engine (it spots the nested quantifier): an ordinary "does not match".
    "nested quantifier": r"^(a+)+$",
    # Exponential for `regex` too: only its time limit ends it.
    "overlapping alternatives": r"^(a|aa)+$",
}


def _parley(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    return subprocess.run(
        [PARLEY, *args],
        capture_output=True,
        text=True,
        timeout=SAFETY_NET_S,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def _events(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]


def test_a_vote_padded_to_backtrack_is_counted_and_the_run_s_timeout_still_fires(write: Write) -> None:
    """The issue's attack on the consensus tally: the vote counts as `invest`, and while the judge (a model that
    would take ten minutes) thinks, the run's 10-second timeout ends the run, exit 4. (It was 3 seconds: on a busy
    machine the run's start and the two votes took longer, and the timeout came before the tally.)"""
    fast = write("fast.yaml", json.dumps({"roles": {"v1": [HOSTILE_VOTE], "v2": ["Too risky.\nVOTE: hold"]}}))
    slow = write("slow.yaml", json.dumps({"roles": {"chair": ["VOTE: invest"]}, "delay_s": 600}))
    team = write(
        "committee.yaml",
        f"""name: committee
pattern: consensus
consensus: {{options: [invest, hold], debate_rounds: 0, tie: judge, judge: chair}}
roles:
  - {{name: v1, prompt: You vote., model: "scripted:{fast}"}}
  - {{name: v2, prompt: You vote., model: "scripted:{fast}"}}
  - {{name: chair, prompt: You settle ties., model: "scripted:{slow}"}}
termination: {{max_turns: 20}}
""",
    )
    proc = _parley("run", str(team), "Should we invest?", "--timeout", "10", "--json", "--no-save")
    assert proc.returncode == EXIT_TIMEOUT, proc.stderr[-2000:]
    events = _events(proc)
    assert events[-1]["type"] == "result" and events[-1]["stop_reason"] == "timeout", events[-1]
    votes = [e for e in events if e["type"] == "vote"]
    assert votes and votes[0]["votes"] == {"v1": "invest", "v2": "hold"}, votes


def _validating_team(write: Write, pattern: str, retries: int) -> Path:
    return write(
        "team.yaml",
        f"""name: checked
pattern: round_robin
roles:
  - name: alpha
    prompt: You answer.
    validate: {{regex: {json.dumps(pattern)}, retries: {retries}}}
termination: {{max_turns: 1}}
""",
    )


@pytest.mark.parametrize(
    ("pattern", "stop_reason", "code"),
    [
        ("nested quantifier", "escalation", EXIT_ESCALATED),
        ("overlapping alternatives", "timeout", EXIT_TIMEOUT),
    ],
)
def test_a_team_pattern_that_backtracks_cannot_hold_the_run_past_its_timeout(
    write: Write, pattern: str, stop_reason: str, code: int
) -> None:
    """Up to eleven checks of at most a second each. The nested quantifier is answered at once (the answer fails
    every check, and the open escalation ends the run, exit 5); the overlapping alternatives are cut at a second
    each, and the run's 8-second timeout (under the eleven seconds they would take) ends the run, exit 4."""
    script = write("s.yaml", json.dumps({"roles": {"alpha": [BACKTRACKS] * 11}}))
    team = _validating_team(write, PATTERNS[pattern], retries=10)
    proc = _parley(
        "run", str(team), "Answer", "--model", f"scripted:{script}", "--timeout", "8", "--json", "--no-save"
    )
    assert proc.returncode == code, proc.stderr[-2000:]
    result = _events(proc)[-1]
    assert result["type"] == "result" and result["stop_reason"] == stop_reason, result


SLOW = PATTERNS["overlapping alternatives"]
RULES = {
    "validate.regex": (f"{{regex: {json.dumps(SLOW)}, retries: 0}}", BACKTRACKS),
    # jsonschema itself runs `pattern` with Python's `re`: parley runs it with the same time limit.
    "a json_schema pattern": (
        "{json_schema: {type: object, properties: {code: {type: string, pattern: "
        f"{json.dumps(SLOW)}}}}}}}, retries: 0}}",
        json.dumps({"code": BACKTRACKS}),
    ),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_a_team_pattern_that_takes_too_long_fails_validation_and_says_so(write: Write, rule: str) -> None:
    validate, answer = RULES[rule]
    script = write("s.yaml", json.dumps({"roles": {"alpha": [answer]}}))
    team = write(
        "team.yaml",
        "name: checked\npattern: round_robin\nroles:\n  - name: alpha\n    prompt: You answer.\n"
        f"    validate: {validate}\ntermination: {{max_turns: 1}}\n",
    )
    proc = _parley(
        "run",
        str(team),
        "Answer",
        "--model",
        f"scripted:{script}",
        "--on-escalation",
        "continue",
        "--json",
        "--no-save",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    [check] = [e for e in _events(proc) if e["type"] == "validation"]
    assert check["passed"] is False
    assert [p for p in check["problems"] if TOO_SLOW in p], check["problems"]


def test_a_suite_pattern_that_takes_too_long_fails_its_expectation_and_says_so(
    write: Write, tmp_path: Path
) -> None:
    write("s.yaml", json.dumps({"roles": {"alpha": [BACKTRACKS]}}))
    write(
        "team.yaml",
        "name: plain\npattern: round_robin\nroles:\n  - {name: alpha, prompt: You answer.}\n"
        "termination: {max_turns: 1}\n",
    )
    suite = write(
        "suite.yaml",
        f"""suite: hostile
defaults: {{team: team.yaml}}
scenarios:
  - name: backtracking
    task: Answer
    model: scripted:s.yaml
    expect:
      - final_matches: {json.dumps(PATTERNS["overlapping alternatives"])}
      - final_contains: aaa
""",
    )
    out = tmp_path / "out"
    proc = _parley("eval", str(suite), "--out", str(out), "--no-save")
    assert proc.returncode != 0 and (out / "results.jsonl").exists(), proc.stderr[-2000:]
    [record] = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    matches, contains = record["expectations"]
    assert matches["outcome"] == "failed" and matches["message"].startswith(TOO_SLOW), matches
    assert contains["outcome"] == "passed"  # the other expectations are still checked


@pytest.fixture
def silent_listener() -> Iterator[tuple[str, socket.socket]]:
    """A loopback HTTP 'server' that never answers: anything that connects would wait forever."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/schema.json", sock


def _was_contacted(sock: socket.socket) -> bool:
    """Whether a connection is waiting (the kernel completes the handshake even though no one accepts)."""
    sock.setblocking(False)
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def _schema_team(write: Write, ref: str) -> Path:
    # The `$ref` is on line 6.
    return write(
        "schema-team.yaml",
        f"""name: schema
pattern: round_robin
roles:
  - name: alpha
    prompt: You answer in JSON.
    validate: {{json_schema: {{"$ref": {json.dumps(ref)}}}, retries: 0}}
termination: {{max_turns: 1}}
""",
    )


def test_a_schema_ref_to_a_server_is_refused_at_load_and_never_fetched(
    write: Write, silent_listener: tuple[str, socket.socket]
) -> None:
    url, sock = silent_listener
    script = write("s.yaml", json.dumps({"roles": {"alpha": ['{"answer": 42}']}}))
    team = _schema_team(write, url)
    proc = _parley("run", str(team), "Answer", "--model", f"scripted:{script}", "--timeout", "5", "--no-save")
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-2000:]
    assert "schema-team.yaml:6: roles[0].validate.json_schema" in proc.stderr, proc.stderr
    assert "refers outside itself" in proc.stderr and url in proc.stderr
    assert not _was_contacted(sock), "parley connected to the schema's server"


def test_a_schema_ref_to_a_local_file_is_refused_at_load_and_never_read(write: Write, tmp_path: Path) -> None:
    secret = tmp_path / "private" / "s.json"
    secret.parent.mkdir()
    secret.write_text(json.dumps({"enum": ["PRIVATE-7f3a9c"]}), encoding="utf-8")
    script = write("s.yaml", json.dumps({"roles": {"alpha": ['{"answer": 42}']}}))
    team = _schema_team(write, secret.as_uri())
    proc = _parley(
        "run",
        str(team),
        "Answer",
        "--model",
        f"scripted:{script}",
        "--on-escalation",
        "continue",
        "--json",
        "--no-save",
    )
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-2000:]
    assert "schema-team.yaml:6: roles[0].validate.json_schema" in proc.stderr, proc.stderr
    assert "refers outside itself" in proc.stderr and "copy the definition into the schema" in proc.stderr
    assert "PRIVATE-7f3a9c" not in proc.stdout + proc.stderr


def test_a_schema_that_skipped_the_load_check_still_fetches_nothing(
    silent_listener: tuple[str, socket.socket], tmp_path: Path
) -> None:
    """Defence in depth: a schema built without the team-file check (an embedding program's own ValidationSpec)
    resolves only inside itself; the outside reference is a validation problem, and no connection is made."""
    url, sock = silent_listener
    program = f"""
from parley._validate import Validator
from parley.spec import ValidationSpec
spec = ValidationSpec.model_construct(json_schema={{"properties": {{"a": {{"$ref": {url!r}}}}}}},
                                      regex=None, contains=[], not_contains=[], check=None, retries=0)
print(Validator(spec).problems('{{"a": 1}}'))
"""
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=SAFETY_NET_S,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cannot be resolved inside it" in done.stdout and url in done.stdout, done.stdout
    assert not _was_contacted(sock), "parley connected to the schema's server"
