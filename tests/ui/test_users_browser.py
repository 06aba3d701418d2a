"""Users in a real browser: the conversations made before logins stay with the first user, another user's
conversation says plainly that it is not yours (and the chat still works), and the thumbs keep what they say."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from chat_started import ChatStarts, evaluate, send_message
from ui.conftest import Server, browser_missing, wait_until

try:
    from playwright.sync_api import Page, expect
except ImportError:
    pytest.skip("Python Playwright is not installed in this environment", allow_module_level=True)
if not Path("/usr/bin/chromium").is_file():
    pytest.skip("/usr/bin/chromium not found: install Debian's chromium package", allow_module_level=True)
expect.set_options(timeout=30_000)

SHOTS = Path("/tmp/shots/users")
AGENT_STEP = '.step[data-step-type="assistant_message"]'
ALICE, BOB = ("alice", "alice-password-1"), ("bob", "bob-password-22")


@pytest.fixture(scope="module")
def two_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server where alice and bob sign in, shared by the tests that need one."""
    if browser_missing():
        pytest.skip(browser_missing() or "")
    server = Server(tmp_path_factory.mktemp("two-users"), "studio.yaml")
    for name, password in (ALICE, BOB):
        server.parley("users", "add", name, "--password-stdin", stdin=password + "\n")
    try:
        yield server.start()
    finally:
        server.stop()


class Tab:
    """One browser tab on the web chat."""

    def __init__(self, page: Page, server) -> None:
        self.page = page
        self.server = server
        self.starts = ChatStarts(page)
        """The chat sessions the page starts (a new chat, a resumed one)."""

    def open(self) -> Tab:
        self.page.goto(self.server.url + "/")
        self.starts.wait()
        return self

    def login(self, user: tuple[str, str]) -> Tab:
        self.page.goto(self.server.url + "/")
        self.page.locator("#email").fill(user[0])
        self.page.locator("#password").fill(user[1])
        self.starts.expect_new()
        self.page.locator('button[type="submit"]').click()
        self.starts.wait()
        return self

    def send(self, text: str) -> None:
        send_message(self.page, text)

    def thread_id(self) -> str:
        self.page.wait_for_url(re.compile(r"/thread/[0-9a-f-]{36}$"))
        return self.page.url.rsplit("/", 1)[1]

    def first_reply(self):  # type: ignore[no-untyped-def]
        reply = self.page.locator(AGENT_STEP).filter(has_text="five to seven times").first
        expect(reply).to_be_visible()
        return reply

    def shot(self, name: str) -> None:
        """Screenshots of the page as it is, in the dark and the light theme (NAME-dark.png, NAME-light.png)."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        for theme in ("dark", "light"):
            self._theme(theme)
            self.page.screenshot(path=str(SHOTS / name.replace(".png", f"-{theme}.png")))
        self._theme("dark")

    def _theme(self, theme: str) -> None:
        # With a time limit (see tests/chat_started.py): a page that stopped answering fails the test.
        evaluate(
            self.page,
            "t => { const c = document.documentElement.classList; c.remove('light', 'dark'); c.add(t); }",
            theme,
        )


def test_the_first_user_finds_the_conversations_made_before_logins(own_server, new_page):
    server = own_server("studio.yaml").start()  # no users: local mode, no login page
    before = Tab(new_page(), server).open()
    before.send("Our churn memo, written before anyone logged in")
    before.first_reply()
    tid = before.thread_id()

    added = server.parley("users", "add", "alice", "--password-stdin", stdin=ALICE[1] + "\n")
    assert added.stdout.splitlines() == [
        "user alice created: the web chat now asks everyone to log in",
        "alice now owns the conversation made without login (single-user mode) or by `parley run`: "
        "it is in their history after login",
    ]

    alice = Tab(new_page(), server).login(ALICE)
    listed = alice.page.locator(f"#thread-{tid}")
    expect(listed).to_be_visible()  # in her history
    listed.click()
    expect(alice.page.locator(AGENT_STEP).filter(has_text="five to seven times")).to_be_visible()
    said = alice.page.locator('.step[data-step-type="user_message"]')
    expect(said.filter(has_text="Our churn memo, written before anyone logged in")).to_be_visible()
    alice.shot("adopted-history.png")
    assert [t.id for t in server.threads("alice")] == [tid]
    assert server.threads("local") == []


def test_another_users_conversation_says_it_is_not_yours_and_the_chat_still_works(two_users, new_page):
    server = two_users
    alice = Tab(new_page(), server).login(ALICE)
    secret = "Alice's confidential churn memo"
    alice.send(secret)
    alice.first_reply()
    tid = alice.thread_id()

    bob = Tab(new_page(), server).login(BOB)
    bob.page.goto(f"{server.url}/thread/{tid}")
    said = bob.page.get_by_text("This conversation is not yours")
    expect(said).to_be_visible()
    expect(said).to_contain_text("you are signed in as bob")
    bob.shot("not-yours.png")
    expect(bob.page.get_by_text("Could not reach the server")).to_have_count(0)
    expect(bob.page.get_by_text(secret)).to_have_count(0)

    # Still signed in, with a chat that works: his own message gets the team's reply.
    bob.starts.wait()  # a new chat of his own, in the page the address opened
    expect(bob.page.locator("#email")).to_have_count(0)
    bob.send("Bob's own question about churn")
    bob.first_reply()
    assert bob.thread_id() != tid
    assert tid in [t.id for t in server.threads("alice")]
    assert tid not in [t.id for t in server.threads("bob")]
    assert all(secret not in t.title for t in server.threads("bob"))


def test_no_thumb_throws_feedback_away(two_users, new_page):
    """Issue 16, point 12: thumbs that show keep what they say (stored with the message, exported with the audit),
    live and on the reopened thread; where the chat shows none, there is nothing to throw away."""
    server = two_users
    alice = Tab(new_page(), server).login(ALICE)
    alice.send("Write about churn")
    alice.first_reply()
    tid = alice.thread_id()
    expect(alice.page.get_by_text("Run ended")).to_be_visible()
    alice.shot("feedback-live.png")
    rated = _rate_if_offered(alice, server, tid, 0)
    alice.page.reload()  # the reopened thread
    expect(alice.page.get_by_text("Run ended")).to_be_visible()
    alice.shot("feedback-reopened.png")
    if rated:
        expect(alice.page.locator(".positive-feedback-on").first).to_be_visible()  # still up
    else:
        _rate_if_offered(alice, server, tid, 0)


def _rate_if_offered(tab: Tab, server, tid: str, already: int) -> bool:  # type: ignore[no-untyped-def]
    """Give the first offered thumbs up and check the store keeps it; False if the page offers none."""
    thumbs = tab.page.locator(".positive-feedback-off")
    if thumbs.count() == 0:  # hidden: nothing is offered that would be lost
        assert len(server.query(lambda s: s.feedback_of(tid))) == already
        return False
    thumbs.first.click()
    tab.page.locator("#submit-feedback").click()  # the comment dialog; an empty comment is fine
    expect(tab.page.locator(".positive-feedback-on").first).to_be_visible()
    wait_until(
        lambda: len(server.query(lambda s: s.feedback_of(tid))) > already, "the thumbs up to be stored"
    )
    row = server.query(lambda s: s.feedback_of(tid))[-1]
    assert (row.value, row.actor) == (1, "alice")
    assert "| alice | feedback | thumbs up |" in server.parley("audit", tid).stdout
    return True


def test_a_removed_user_is_signed_out(two_users, new_page):
    server = two_users
    server.parley("users", "add", "carol", "--password-stdin", stdin="carol-password-3\n")
    carol = Tab(new_page(), server).login(("carol", "carol-password-3"))
    login = "; ".join(f"{c['name']}={c['value']}" for c in carol.page.context.cookies())
    removed = server.parley("users", "remove", "carol")
    assert removed.stdout.splitlines()[0] == "user carol removed: they can no longer log in"

    # Her browser's login (a signed cookie that lasts days) opens nothing any more: the page asks for a login. The
    # cookie is sent as it was before the removal: her open page, refused on its socket, may drop it meanwhile.
    answer = httpx.get(f"{server.url}/user", headers={"Cookie": login}, timeout=30)
    assert answer.status_code == 401 and "This user no longer exists on this server" in answer.text
    carol.page.reload()
    expect(carol.page.locator("#email")).to_be_visible()
    expect(carol.page.locator("#chat-input")).to_have_count(0)
