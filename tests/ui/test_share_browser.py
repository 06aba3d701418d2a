"""Shared rooms in a real browser, in the single-process mode (SQLite, no Redis): the owner shares a conversation
from the web chat's Share control and ends a member's access there; nobody else is offered the control; a member
who stops the run is named on the other pages ("Stopped by bob")."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from chat_started import ChatStarts, evaluate, send_message
from ui.conftest import Server, wait_until

try:
    from playwright.sync_api import Locator, Page, expect
except ImportError:
    pytest.skip("Python Playwright is not installed in this environment", allow_module_level=True)
if not Path("/usr/bin/chromium").is_file():
    pytest.skip("/usr/bin/chromium not found: install Debian's chromium package", allow_module_level=True)
expect.set_options(timeout=30_000)

SHOTS = Path("/tmp/shots/share")
AGENT_STEP = '.step[data-step-type="assistant_message"]'
USERS = {"alice": "alice-password-1", "bob": "bob-password-22", "carol": "carol-password-333"}


def room_server(own_server, script: str = "studio.yaml") -> Server:  # type: ignore[no-untyped-def]
    """A server of the test's own, where alice, bob and carol sign in."""
    server = own_server(script)
    for name, password in USERS.items():
        server.parley("users", "add", name, "--password-stdin", stdin=password + "\n")
    return server.start()


def shares(server: Server, tid: str) -> list[tuple[str, str, str, str]]:
    """The audit's shares and revokes of a conversation: (who did it, what, whose access, the role)."""
    rows = [r for r in server.audit(tid) if r.action in ("share", "revoke")]
    return [(r.actor, r.action, r.detail["member"], r.detail["role"]) for r in rows]


class Tab:
    """One browser tab on the web chat, signed in as one user."""

    def __init__(self, page: Page, server: Server) -> None:
        self.page = page
        self.server = server
        self.starts = ChatStarts(page)

    def login(self, name: str) -> Tab:
        self.page.goto(self.server.url + "/")
        self.page.locator("#email").fill(name)
        self.page.locator("#password").fill(USERS[name])
        self.starts.expect_new()
        self.page.locator('button[type="submit"]').click()
        self.starts.wait()
        return self

    def open_thread(self, tid: str) -> Tab:
        self.starts.expect_new()
        self.page.goto(f"{self.server.url}/thread/{tid}")
        self.starts.wait()
        return self

    def open_from_sidebar(self, tid: str) -> Tab:
        """Open a conversation from the sidebar, as a person does (the page keeps its connection)."""
        listed = self.page.locator(f"#thread-{tid} a")
        expect(listed).to_be_visible()
        self.starts.expect_new()
        listed.click()
        self.page.wait_for_url(f"**/thread/{tid}")
        self.starts.wait()
        return self

    def send(self, text: str) -> None:
        send_message(self.page, text)

    def command(self, name: str, text: str = "") -> None:
        """Select a composer command button, type (or not), send."""
        self.page.locator(f"#command-{name}").click()
        if text:
            self.page.locator("#chat-input").fill(text)
        self.page.locator("#chat-submit").click()

    def thread_id(self) -> str:
        self.page.wait_for_url(re.compile(r"/thread/[0-9a-f-]{36}$"))
        return self.page.url.rsplit("/", 1)[1]

    def note(self, text: str | re.Pattern[str]) -> Locator:
        return self.page.locator(AGENT_STEP).filter(has_text=text)

    def stop(self) -> None:
        """The run's Stop button: the controls move below each new message, so click the one that stays last."""
        expect(self.page.locator(AGENT_STEP).last).to_contain_text("The team is working")
        expect(self.note("The team is working")).to_have_count(
            1
        )  # one set of controls, however the page came
        self.note("The team is working").get_by_role("button", name="Stop").click()

    def share_with(self, name: str, role: str) -> None:
        """The Share control: select Share, type the name, send, then pick "Can write" or "Read-only"."""
        self.command("Share", name)
        asking = self.note(f"Share this conversation with {name}?").last
        asking.get_by_role("button", name=role).click()
        expect(self.note(f"Shared with {name}:")).to_be_visible()

    def share_button(self) -> Locator:
        return self.page.locator("#command-Share")

    def shot(self, name: str) -> None:
        """Screenshots of the page as it is, in the dark and the light theme (NAME-dark.png, NAME-light.png)."""
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.add_style_tag(content="*, *::before, *::after { transition: none !important; }")
        for theme in ("dark", "light"):
            evaluate(
                self.page,
                "t => { const c = document.documentElement.classList; c.remove('light', 'dark'); c.add(t); }",
                theme,
            )
            self.page.screenshot(path=str(SHOTS / f"{name}-{theme}.png"))


def test_the_owner_shares_from_the_chat_and_revokes_and_nobody_else_sees_share(own_server, new_page):
    server = room_server(own_server)
    alice = Tab(new_page(), server).login("alice")
    expect(alice.share_button()).to_have_count(0)  # a new chat: nothing to share until it is saved
    alice.send("Our churn memo")
    tid = alice.thread_id()
    expect(alice.share_button()).to_be_visible()  # saved: its owner may share it, while the run goes on too
    expect(alice.note("Run ended")).to_contain_text("editor said APPROVE")
    expect(alice.share_button()).to_be_visible()  # and once it is over

    # Refusals, in words: nobody of that name, and herself.
    alice.command("Share", "mallory")
    expect(alice.note("there is no user mallory on this server")).to_be_visible()
    alice.command("Share", "alice")
    expect(alice.note("You own this conversation already")).to_be_visible()

    # A name asks whether they may write; read-only shares so, at once.
    alice.command("Share", "bob")
    asking = alice.note("Share this conversation with bob?")
    expect(asking).to_be_visible()
    expect(asking.get_by_role("button", name="Can write")).to_be_visible()
    alice.shot("ask")
    asking.get_by_role("button", name="Read-only").click()
    done = alice.note("Shared with bob: they may watch it (read-only).")
    expect(done).to_contain_text("bob · read-only")
    expect(done.get_by_role("button", name="Revoke bob")).to_be_visible()
    expect(asking.get_by_role("button", name="Can write")).to_have_count(0)  # answered: its buttons go
    alice.shot("shared")
    wait_until(lambda: server.query(lambda s: s.access("bob", tid)) == "read", "bob is a read-only member")
    assert shares(server, tid) == [("alice", "share", "bob", "read")]

    # bob opens it: he reads it, and is offered no Share (he is not its owner).
    bob = Tab(new_page(), server).login("bob")
    expect(bob.share_button()).to_have_count(0)
    bob.open_from_sidebar(tid)
    expect(bob.note("five to seven times")).to_be_visible()
    expect(bob.share_button()).to_have_count(0)

    # Share sent empty lists the members; Revoke ends bob's access now, and is audited.
    alice.command("Share")
    listed = alice.note("this conversation is yours, shared with").last
    expect(listed).to_contain_text("bob · read-only")
    listed.get_by_role("button", name="Revoke bob").click()
    expect(alice.note("bob no longer has this conversation: their access ended now.")).to_be_visible()
    expect(alice.note("shared with nobody")).to_be_visible()
    assert server.query(lambda s: s.access("bob", tid)) is None
    assert shares(server, tid)[-1] == ("alice", "revoke", "bob", "read")


def test_a_member_who_stops_the_run_is_named_on_the_other_pages_live_and_reopened(own_server, new_page):
    server = room_server(own_server, "studio-room.yaml")  # the writer's reply streams for 90 s
    alice = Tab(new_page(), server).login("alice")
    alice.send("Our churn memo")
    tid = alice.thread_id()
    alice.stop()
    expect(alice.note("Run ended")).to_contain_text(
        re.compile(r"Stopped by you (at turn \d|before any turn)")
    )
    alice.share_with("bob", "Can write")
    bob = Tab(new_page(), server).login("bob")  # his sidebar lists the room

    alice.send("Make it shorter")
    expect(alice.note("The team is working")).to_be_visible()
    bob.open_from_sidebar(tid)  # opened while the run goes on, a shared room's member watches it live
    expect(bob.note("The team is working")).to_be_visible()
    bob.stop()
    ended = re.compile(r"Stopped by (bob|you) (at turn \d+|before any turn)")
    expect(alice.note("Run ended").last).to_contain_text("Stopped by bob")
    expect(alice.note("Run ended").last).to_contain_text(ended)
    expect(bob.note("Run ended").last).to_contain_text("Stopped by you")
    alice.shot("stopped-by-bob")
    result = [e for e in server.events(tid) if e["type"] == "result"][-1]
    assert (result["stop_reason"], result["detail"]) == ("stopped", "stopped by bob")

    alice.open_thread(tid)  # reopened: the stored thread says the same to each
    expect(alice.note("Run ended").last).to_contain_text("Stopped by bob")
    expect(alice.note("Run ended").first).to_contain_text("Stopped by you")
    bob.open_thread(tid)
    expect(bob.note("Run ended").last).to_contain_text("Stopped by you")
    expect(bob.note("Run ended").first).to_contain_text("Stopped by alice")

    # Both pages now hold the room, idle. alice starts its next run; bob's message joins that run (one conversation
    # per thread in this process): never a second run on the same thread.
    def started() -> int:
        return sum(e["type"] == "run_started" for e in server.events(tid))

    runs = started()
    alice.send("One more pass, please")
    expect(alice.note("The team is working")).to_be_visible()
    wait_until(lambda: started() == runs + 1, "alice's run in the store")
    bob.send("Add a checklist at the end")
    expect(bob.note("The team is working")).to_be_visible()  # alice's run, shown on bob's page too
    # shown from its start: alice's message, once
    expect(bob.note("↳ alice's message started the run: One more pass, please")).to_have_count(1)
    queued = wait_until(
        lambda: [e for e in server.events(tid) if e["type"] == "human_queued" and e["author"] == "bob"],
        "bob's message queued in the run",
    )
    events = server.events(tid)
    last_start = max(e["seq"] for e in events if e["type"] == "run_started")
    assert queued[-1]["seq"] > last_start and started() == runs + 1
    bob.stop()
    expect(alice.note("Run ended").last).to_contain_text("Stopped by bob")
    assert started() == runs + 1
