"""A card's buttons on the web chat page: once its decision is made, no page is handed them again."""

from __future__ import annotations

import asyncio
from typing import Any

import chainlit as cl
from chainlit.context import ChainlitContext, context_var
from chainlit.session import HTTPSession

from parley.web._controls import Offers


class Page:
    """What the page holds: the buttons Chainlit's `action` events added, less those `remove_action` dropped,
    in the order they were sent (one socket). Each send yields to the loop, as a socket write does."""

    def __init__(self) -> None:
        self.buttons: dict[str, str] = {}
        self.sending = asyncio.Event()
        self.written = asyncio.Event()
        """Set by the test when a button's write may finish (until then the offer waits on it)."""
        self.written.set()

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        if event == "action":
            self.buttons[data["id"]] = data["label"]
            self.sending.set()
            await self.written.wait()
        elif event == "remove_action":
            self.buttons.pop(data["id"], None)
        await asyncio.sleep(0)


def _on(page: Page) -> None:
    context_var.set(ChainlitContext(HTTPSession(id="test", client_type="webapp"), emitter=page))  # type: ignore[arg-type]


def _buttons() -> list[cl.Action]:
    return [cl.Action(name="approve", payload={}, label=x) for x in ("Approve", "Deny…")]


async def test_a_settled_card_is_not_offered_its_buttons_again() -> None:
    page = Page()
    _on(page)
    offers, card = Offers(), cl.Message(content="wants to call issue_refund", id="card-1")
    await offers.offer("a1", card, _buttons())
    assert sorted(page.buttons.values()) == ["Approve", "Deny…"]
    await offers.withdraw("a1", card)
    assert page.buttons == {}
    # A page reconnecting afterwards is handed what the run still waits on: not this card.
    await offers.offer("a1", card, _buttons())
    assert page.buttons == {} and card.actions == []


async def test_a_card_settled_while_its_buttons_go_out_keeps_none() -> None:
    page = Page()
    _on(page)
    offers, card = Offers(), cl.Message(content="wants to call issue_refund", id="card-1")
    page.written.clear()
    offering = asyncio.create_task(offers.offer("a1", card, _buttons()))
    await page.sending.wait()  # the Approve button is on its way to the page
    await offers.withdraw("a1", card)  # Stop, meanwhile
    page.written.set()
    await offering
    assert page.buttons == {} and card.actions == []


async def test_a_card_decided_here_is_not_offered_again_before_the_run_shows_the_decision() -> None:
    """A click on Pick 1 is taken by the run at once, but shown by it later: a page reconnecting in between (a
    reopened thread connects more than once) must not be handed the buttons back."""
    first, second = Page(), Page()
    _on(first)
    offers, card = Offers(), cl.Message(content="Your decision: the vote is tied", id="card-1")
    await offers.offer("e1", card, _buttons())
    await offers.decided("e1")  # the click
    assert first.buttons == {}
    _on(second)  # the page's next socket, before the run shows the decision
    await offers.clear_page()
    await offers.offer("e1", card, _buttons())
    assert second.buttons == {}
    await offers.withdraw("e1", card)  # the run shows the decision
    assert second.buttons == {} and card.actions == []
