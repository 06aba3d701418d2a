"""The container files: the compose file and the Dockerfile say what parley really reads, and where a Docker daemon
answers, the image builds and its `parley` runs."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from parley.cli import _parser  # the CLI's own parser: the Dockerfile's command must parse

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text(encoding="utf-8"))


def _read_by_parley(variable: str) -> bool:
    """Whether parley's code (or Chainlit's, for its own variables) reads the environment variable."""
    sources = [*ROOT.joinpath("parley").rglob("*.py")]
    return any(variable in p.read_text(encoding="utf-8") for p in sources)


def test_the_images_command_is_one_parley_understands() -> None:
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.MULTILINE)
    assert cmd is not None
    argv = yaml.safe_load(cmd.group(1))
    assert argv[0] == "parley"
    args = _parser().parse_args(argv[1:])
    assert (args.command, args.host, args.port) == ("ui", "0.0.0.0", 8000)
    assert "EXPOSE 8000" in DOCKERFILE and "USER parley" in DOCKERFILE  # not root
    assert "parley model install" in DOCKERFILE  # the embedded model is in the image


def test_the_compose_replicas_share_a_store_and_a_sign_in_secret_parley_reads() -> None:
    services = COMPOSE["services"]
    replicas = [s for name, s in services.items() if name.startswith("parley")]
    assert len(replicas) == 2
    for replica in replicas:
        env = replica["environment"]
        assert env["PARLEY_DATABASE_URL"].startswith("postgresql://") and "@db:" in env["PARLEY_DATABASE_URL"]
        assert "PARLEY_AUTH_SECRET" in env["CHAINLIT_AUTH_SECRET"]  # one secret, from the operator, for both
        assert replica["depends_on"]["db"]["condition"] == "service_healthy"
    assert replicas[0]["environment"] == replicas[1]["environment"]
    assert {p.split(":")[1] for r in replicas for p in r["ports"]} == {"8000"}
    for variable in (
        "PARLEY_DATABASE_URL",
        "CHAINLIT_AUTH_SECRET",
        "PARLEY_DATA_DIR",
        "PARLEY_REDIS_URL",
        "PARLEY_RUNS",
    ):
        assert _read_by_parley(variable), f"{variable} is set for the container but parley never reads it"
    assert "ENV PARLEY_DATA_DIR=/data" in DOCKERFILE


def test_the_compose_worker_joins_the_replicas_cluster_and_runs_what_they_relay() -> None:
    services = COMPOSE["services"]
    worker, replica = services["worker"], services["parley-a"]
    assert worker["environment"] == replica["environment"]  # the same store, bus and secret
    assert replica["environment"]["PARLEY_REDIS_URL"].startswith("redis://redis:")
    assert replica["environment"]["PARLEY_RUNS"] == "workers"  # the web replicas only relay
    assert _parser().parse_args(worker["command"][1:]).command == "worker"
    assert worker["command"][0] == "parley"
    assert (
        services["redis"]["healthcheck"] and replica["depends_on"]["redis"]["condition"] == "service_healthy"
    )


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.mark.skipif(
    not _docker_answers(), reason="no Docker daemon answers here (CI machines with one build it)"
)
def test_the_image_builds_and_its_parley_lists_the_shipped_teams() -> None:
    tag = "parley-test:ci"
    built = subprocess.run(
        ["docker", "build", "-t", tag, str(ROOT)], capture_output=True, text=True, timeout=1800
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    try:
        teams = subprocess.run(
            ["docker", "run", "--rm", tag, "parley", "teams"], capture_output=True, text=True, timeout=300
        )
        assert teams.returncode == 0, teams.stderr
        assert "content-studio" in teams.stdout
        status = subprocess.run(
            ["docker", "run", "--rm", tag, "parley", "model", "status"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert status.returncode == 0 and "installed" in status.stdout
    finally:
        subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True, timeout=120)
