"""Scale-out: two `parley ui` replicas on one PostgreSQL database, driven in Chromium as people would.

Each replica has its own data folder, as on separate machines; they share only the database
(`PARLEY_DATABASE_URL`) and the secret that signs logins (`CHAINLIT_AUTH_SECRET`), as replicas
behind one load balancer do. Replica A is killed mid-run and the conversation goes on on replica B;
two users on the two replicas never see each other's conversations.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from chat_started import STARTS, ChatStarts, send_message
from ui.conftest import Server, browser_missing, wait_until

from parley.events import MessageEvent, event_adapter

if browser_missing() is None:
    from playwright.sync_api import Page, expect
else:
    pytest.skip(browser_missing() or "", allow_module_level=True)
expect.set_options(timeout=30_000)  # a whole scripted run fits; the default 5 s is tight on a busy machine

AGENT_STEP = '.step[data-step-type="assistant_message"]'
STUDIO = [
    ("researcher", "Research notes: replacing a lost customer costs five to seven times more."),
    ("writer", "Draft one: churn is the quiet leak in a small business's revenue."),
    ("editor", "Open with the cost of a lost customer, then send it back."),
    ("researcher", "Research follow-up: monthly churn above 3% is the usual warning sign."),
    ("writer", "Draft two: track churn monthly and fix the top reason first."),
    ("editor", "Clear and accurate. APPROVE"),
]
"""content-studio's conversation (researcher, writer, editor in turn); the editor's APPROVE ends it."""
PASSWORDS = {"alice": "alice-password-1", "bob": "bob-password-22"}
pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


class Replica(Server):
    """A `parley ui` process with its own data folder, on the shared database and login secret."""

    def __init__(self, data_dir: Path, script: Path, *, database: str, secret: str) -> None:
        super().__init__(data_dir, str(script))
        self.database = database
        self.secret = secret

    @property
    def db_url(self) -> str:
        return self.database

    def env(self) -> dict[str, str]:
        return super().env() | {"PARLEY_DATABASE_URL": self.database, "CHAINLIT_AUTH_SECRET": self.secret}

    def messages(self, tid: str) -> list[tuple[str, str, int]]:
        rows = self.query(lambda s: s.events(tid))
        events = [event_adapter.validate_python(r.payload) for r in rows]
        return [(e.source, e.content, e.turn) for e in events if isinstance(e, MessageEvent)]

    def stored_types(self, tid: str) -> list[str]:
        return [r.type for r in self.query(lambda s: s.events(tid))]


@pytest.fixture
def replicas(db_url: str, tmp_path: Path) -> Iterator[tuple[Replica, Replica]]:
    """Replicas A and B of the web chat, started together, with the users alice and bob."""
    lines = ["roles:"]
    for role in ("researcher", "writer", "editor"):
        lines += [f"  {role}:", *(f'    - "{text}"' for who, text in STUDIO if who == role)]
    script = tmp_path / "studio.yaml"
    script.write_text("\n".join([*lines, "delay_s: 0.6", ""]), encoding="utf-8")
    secret = secrets.token_urlsafe(32)
    a, b = (Replica(tmp_path / name, script, database=db_url, secret=secret) for name in ("a", "b"))
    for user, password in PASSWORDS.items():
        a.parley("users", "add", user, "--password-stdin", stdin=password + "\n")
    try:
        a.launch()
        b.launch()  # both boot at once
        yield a.wait_ready(), b.wait_ready()
    finally:
        for replica in (a, b):
            replica.stop()
            print(f"--- parley ui on {replica.url} (shown if the test failed):\n{replica.log_tail()}")


def log_in(page: Page, replica: Replica, user: str) -> None:
    page.goto(replica.url + "/")
    page.locator("#email").fill(user)
    page.locator("#password").fill(PASSWORDS[user])
    STARTS[id(page)].expect_new()
    page.locator('button[type="submit"]').click()
    ready(page)


def ready(page: Page) -> None:
    """A chat session started since the last line (a new document, `expect_new()`; see tests/chat_started.py):
    the session is live."""
    STARTS[id(page)].wait()


def send(page: Page, text: str) -> str:
    """Send a message; returns the id of the conversation it went to."""
    send_message(page, text)
    page.wait_for_url(re.compile(r"/thread/[0-9a-f-]{36}$"))
    return page.url.rsplit("/", 1)[1]


def new_tab(page: Page) -> Page:
    """Close `page` and open another tab of the same person (same cookies). The tab of a replica that just died
    has its own scripts reacting to the lost server (reconnects, a move to the sign-in page) that can cut short a
    navigation made in it; a fresh tab carries the same login and none of that."""
    tab = page.context.new_page()
    STARTS[id(tab)] = ChatStarts(tab)
    page.close()
    return tab


def agent(page: Page, name: str, turn: int) -> Any:
    """An agent's message, by the header every agent message starts with."""
    return page.locator(AGENT_STEP).filter(has_text=f"{name} · turn {turn}")


def test_a_conversation_cut_off_by_a_crashed_replica_goes_on_on_the_other(
    replicas: tuple[Replica, Replica], person: Callable[[], Page]
) -> None:
    a, b = replicas
    page = person()
    log_in(page, a, "alice")
    tid = send(page, "Write about churn")
    wait_until(lambda: len(a.messages(tid)) >= 2, "two finished turns in the store")
    a.stop(kill=True)  # replica A dies mid-run: SIGKILL, while the next reply streams
    kept = a.messages(tid)
    assert kept == [(who, text, n) for n, (who, text) in enumerate(STUDIO[: len(kept)], start=1)]
    assert "result" not in a.stored_types(tid)

    # Behind one address, the next request lands on replica B: alice's login is still good there.
    page = new_tab(page)
    page.goto(b.url + "/")
    ready(page)  # a new chat first: the thread's is the next one
    expect(page.locator(f"#thread-{tid} a")).to_be_visible()
    STARTS[id(page)].expect_new()
    page.locator(f"#thread-{tid} a").click()  # her conversation, from the history sidebar
    page.wait_for_url(f"**/thread/{tid}")
    ready(page)
    for turn, (who, text, _) in enumerate(kept, start=1):
        expect(agent(page, who, turn)).to_contain_text(text)
    expect(page.locator(AGENT_STEP).filter(has_text=re.compile(r"· turn \d+"))).to_have_count(len(kept))

    send(page, "Go on")
    expect(agent(page, "editor", 6)).to_contain_text("APPROVE")  # the next role in order went on to the end
    wait_until(lambda: "result" in b.stored_types(tid), "the run's result in the store")
    assert b.messages(tid) == [(who, text, n) for n, (who, text) in enumerate(STUDIO, start=1)]


def test_two_users_on_two_replicas_never_see_each_others_conversations(
    replicas: tuple[Replica, Replica], person: Callable[[], Page]
) -> None:
    a, b = replicas
    alice, bob = person(), person()
    log_in(alice, a, "alice")
    log_in(bob, b, "bob")
    mine = send(alice, "Alice's confidential churn memo")
    theirs = send(bob, "Bob's pricing plan")
    expect(agent(alice, "researcher", 1)).to_be_visible()
    expect(agent(bob, "researcher", 1)).to_be_visible()

    # Each sidebar lists its owner's conversation, on the replica that ran it and on the other one.
    for page, replica, own, other, secret in (
        (alice, a, mine, theirs, "Bob's pricing plan"),
        (bob, b, theirs, mine, "Alice's confidential churn memo"),
        (alice, b, mine, theirs, "Bob's pricing plan"),
        (bob, a, theirs, mine, "Alice's confidential churn memo"),
    ):
        page.goto(replica.url + "/")
        expect(page.locator(f"#thread-{own}")).to_be_visible()
        expect(page.locator(f"#thread-{other}")).to_have_count(0)
        expect(page.locator("#thread-history")).not_to_contain_text(secret)

    # Opening the other's conversation directly is refused on either replica.
    for page, replica, other in ((bob, a, mine), (bob, b, mine), (alice, a, theirs), (alice, b, theirs)):
        refused = page.request.get(f"{replica.url}/project/thread/{other}")
        assert refused.status == 403 and "This conversation is not yours" in refused.text()
    own = alice.request.get(f"{b.url}/project/thread/{mine}")
    assert own.status == 200 and "Alice's confidential churn memo" in own.text()
    assert [t.id for t in a.threads("alice")] == [mine]
    assert [t.id for t in b.threads("bob")] == [theirs]
