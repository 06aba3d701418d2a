"""The web chat in a real browser, across servers and users: a conversation outlives its server's crash, and
each user sees only their own. Each test has a server of its own (split from test_chat_browser.py, whose
tests share theirs, so that test workers share out the browser suite evenly).
"""

from __future__ import annotations

from test_chat_browser import Chat, expect, of_type, result_of
from ui.conftest import wait_until

# -- 6. the server restarts; the conversation goes on -------------------------------------------------


def test_conversation_survives_a_server_restart(own_server, new_page):
    server = own_server("restart.yaml").start()
    chat = Chat(new_page(), server).open()
    chat.send("Write about churn before the restart")
    expect(chat.note("Run ended")).to_contain_text("editor said APPROVE")
    tid = chat.thread_id()
    result_of(server, tid)
    before = server.events(tid)

    server.stop(kill=True)  # a crash, not a polite shutdown
    server.start()  # same port, same data folder, same script

    chat = Chat(new_page(), server).open()
    chat.open_thread(tid)
    expect(chat.agent("editor", 3)).to_contain_text("Before the restart: APPROVE")
    chat.send("Now make it shorter")
    wait_until(
        lambda: len(of_type(server.events(tid), "result")) == 2, "the second run's result in the store"
    )
    # Live streaming is covered by the other tests; here, what matters is that the continued
    # conversation is whole: reopen it and read it back.
    chat.open(f"/thread/{tid}")
    expect(chat.agent("researcher", 4)).to_contain_text("After the restart: research notes")
    expect(chat.note("Run ended").last).to_contain_text("editor said APPROVE")
    after = server.events(tid)
    assert len(after) > len(before)
    assert after[: len(before)] == before
    assert [(m["source"], m["turn"]) for m in of_type(after, "message")][3:] == [
        ("researcher", 4),
        ("writer", 5),
        ("editor", 6),
    ]


# -- 7. two users, two private histories --------------------------------------------------------------


def test_users_only_see_their_own_conversations(own_server, new_page):
    server = own_server("studio.yaml")
    server.parley("users", "add", "alice", "--password-stdin", stdin="alice-password-1\n")
    server.parley("users", "add", "bob", "--password-stdin", stdin="bob-password-22\n")
    server.start()

    alice = Chat(new_page(), server).login("alice", "alice-password-1")
    secret = "Alice's confidential churn memo"
    alice.send(secret)
    expect(alice.agent("researcher", 1)).to_contain_text("five to seven times")
    tid = alice.thread_id()
    expect(alice.page.locator(f"#thread-{tid}")).to_be_visible()  # her own sidebar lists it
    assert [t.id for t in server.threads("alice")] == [tid]

    bob = Chat(new_page(), server).login("bob", "bob-password-22")
    expect(bob.page.locator("#thread-history")).to_contain_text("No threads found")
    expect(bob.page.locator(f"#thread-{tid}")).to_have_count(0)
    expect(bob.page.get_by_text(secret)).to_have_count(0)

    # Bob opens the address of Alice's conversation: the server refuses to resume it for him ...
    bob.page.goto(f"{server.url}/thread/{tid}")
    refusals = ("Authorization for the thread failed", "asked for another user's thread")
    wait_until(lambda: any(r in server.log_tail(400) for r in refusals), "the server to refuse Bob")
    bob.page.wait_for_load_state("networkidle")
    expect(bob.page.get_by_text(secret)).to_have_count(0)
    expect(bob.turns()).to_have_count(0)
    expect(bob.user_messages()).to_have_count(0)
    # ... and so does the thread API behind the page, which still serves it to Alice.
    refused = bob.page.request.get(f"{server.url}/project/thread/{tid}")
    assert refused.status == 403 and "This conversation is not yours" in refused.text()
    mine = alice.page.request.get(f"{server.url}/project/thread/{tid}")
    assert mine.status == 200 and secret in mine.text()
    assert server.threads("bob") == []
