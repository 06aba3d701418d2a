"""API tokens: `parley tokens create|list|revoke` as a person at a terminal uses them, and the store underneath on
SQLite and PostgreSQL (only a hash kept; revoked and removed users' tokens sign nobody in)."""

from __future__ import annotations

import argparse
import asyncio
import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from parley import cli
from parley._cli_tokens import add, run
from parley.store import Store, default_url


def parley_tokens(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`parley tokens ARGS`: through the CLI once it lists the command, else through its own parser."""
    try:
        code = cli.main(["tokens", *args])
    except SystemExit as exc:  # the CLI does not know `tokens` (yet): argparse's usage error
        capsys.readouterr()
        if exc.code != 2:
            raise
        parser = argparse.ArgumentParser(prog="parley")
        add(parser.add_subparsers(dest="command"))
        try:
            code = run(parser.parse_args(["tokens", *args]))
        except cli.ConfigError as error:
            out, err = capsys.readouterr()
            return 2, out, err + f"parley: {error}\n"
    out, err = capsys.readouterr()
    return code, out, err


def in_store(action):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        async with await Store.open(default_url()) as store:
            return await action(store)

    return asyncio.run(go())


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PARLEY_DATA_DIR", str(tmp_path))
    in_store(lambda s: s.create_user("alice", "alice-password"))
    return tmp_path


def test_create_prints_the_secret_once_and_list_and_revoke_manage_it(
    data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = parley_tokens(capsys, "create", "alice", "--label", "nightly report")
    assert code == 0
    secret = out.strip()
    assert secret.startswith("pt_") and "\n" not in secret, "the secret alone on standard output"
    assert "shown this once only" in err and "Authorization: Bearer" in err
    assert in_store(lambda s: s.user_of_token(secret)) == "alice"
    code, out, _ = parley_tokens(capsys, "list")
    [header, line] = out.splitlines()
    assert header.split()[:4] == ["ID", "USER", "LABEL", "CREATED"]
    token_id = line.split()[0]
    assert secret.startswith(f"pt_{token_id}_") and "nightly report" in line
    assert secret not in out
    code, out, _ = parley_tokens(capsys, "revoke", token_id)
    assert code == 0 and f"token {token_id} revoked" in out
    assert in_store(lambda s: s.user_of_token(secret)) is None
    code, out, err = parley_tokens(capsys, "revoke", token_id)
    assert code == 2 and "no API token" in err
    code, out, err = parley_tokens(capsys, "create", "nobody")
    assert code == 2 and "no such user" in err
    code, out, err = parley_tokens(capsys, "create", "local")
    assert code == 2 and "users exist now" in err


async def test_the_store_keeps_only_a_hash_and_the_token_dies_with_its_user(db_url: str) -> None:
    async with await Store.open(db_url) as store:
        await store.create_user("bob", "bob-password")
        token_id, secret = await store.create_token("bob", "ci")
        local_id, local_secret = await store.create_token("local")
        assert (
            await store.user_of_token(secret) == "bob" and await store.user_of_token(local_secret) == "local"
        )
        assert await store.user_of_token(secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
        assert await store.user_of_token(f"pt_{token_id}_") is None and await store.user_of_token("") is None
        [row] = await store.tokens_of("bob")
        assert (row.id, row.label, row.owner) == (token_id, "ci", "bob") and row.last_used_at is not None
        assert {r.id for r in await store.tokens_of()} == {token_id, local_id}
        audit = [(r.actor, r.action, r.detail["decision"]) for r in await store.audit_log(None)]
        assert ("bob", "api token", "created") in audit
        await store.remove_user("bob")
        assert await store.user_of_token(secret) is None
        await store.create_user("bob", "bob-password")
        assert await store.user_of_token(secret) is None, "a user created again does not inherit old tokens"
    engine = create_async_engine(db_url)
    async with engine.connect() as conn:
        from parley.store._tokens import api_tokens

        stored = (await conn.execute(select(api_tokens.c.secret_hash))).scalars().all()
    await engine.dispose()
    assert secret not in str(stored) and hashlib.sha256(local_secret.encode()).hexdigest() in stored
