"""A card's buttons on the web chat page: once its decision is made, no page is handed them again."""

from __future__ import annotations

import asyncio
from typing import Any

import chainlit as cl
from chainlit.context import ChainlitContext, context_var
from chainlit.session import HTTPSession

from parley.events import ApprovalRequestEvent, EscalationEvent, Position, QuestionEvent
from parley.web._controls import Offers
from parley.web._datalayer import card_step_id
from parley.web._elements import actions_for, every_decision_button


class Page:
    """What the page holds, as Chainlit's page keeps it: a list of buttons, to which each `action` event adds one
    (an id it holds already included) and from which each `remove_action` event drops the first with that id. The
    list outlives the page's sockets. Each send yields to the loop, as a socket write does."""

    def __init__(self) -> None:
        self.held: list[tuple[str, str]] = []
        self.sending = asyncio.Event()
        self.written = asyncio.Event()
        """Set by the test when a button's write may finish (until then the offer waits on it)."""
        self.written.set()
        self.open = True
        """False once the page has moved to another socket: what this one carries is lost."""

    @property
    def buttons(self) -> dict[str, str]:
        return dict(self.held)

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        if not self.open:
            return
        if event == "action":
            self.held.append((data["id"], data["label"]))
            self.sending.set()
            await self.written.wait()
        elif event == "remove_action":
            ids = [i for i, _ in self.held]
            if data["id"] in ids:
                del self.held[ids.index(data["id"])]
        await asyncio.sleep(0)


class Socket:
    """One of the page's sockets: what goes through it reaches the page while the page listens to it."""

    def __init__(self, page: Page) -> None:
        self.page, self.open = page, True

    async def emit(self, event: str, data: dict[str, Any]) -> None:
        if self.open:
            await self.page.emit(event, data)


def _on(page: Page | Socket) -> None:
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


TID = "0b6c7e8a-5d0f-4a51-9f43-0c3f2f1e9a77"
REFUND = ApprovalRequestEvent(
    source="billing", name="issue_refund", arguments={"amount": 395.12}, request_id="r1"
)
TIE = EscalationEvent(
    source="verdict",
    kind="tie",
    escalation_id="e1",
    positions=[Position(who="analyst", text="invest"), Position(who="risk", text="hold")],
)


async def test_a_card_offered_on_two_sockets_of_one_page_loses_every_copy() -> None:
    """Chainlit's page adds a button per `action` event even when it holds that id: a card offered on a reopened
    page's first socket and again on its second is held twice, and each copy needs its own removal."""
    page = Page()
    _on(page)
    offers = Offers()
    card = cl.Message(content="wants to call issue_refund", id=card_step_id(TID, "r1"))
    await offers.offer("r1", card, actions_for(REFUND, card.id))
    await offers.offer("r1", card, actions_for(REFUND, card.id))  # the next socket, before any removal
    assert [label for _, label in page.held] == ["Approve", "Deny…", "Approve", "Deny…"]
    await offers.withdraw("r1", card)
    assert page.held == []


async def test_buttons_whose_removal_went_to_a_dropped_socket_leave_when_the_thread_is_opened_again() -> None:
    """The page showed the tie's buttons through one socket and moved to another as the decision was settled: the
    removal went to the socket it had left. Whichever session next sends it the thread drops them, though it never
    sent them: a decision's buttons have the same ids in every session and every process."""
    page = Page()
    first = Socket(page)
    _on(first)
    offers = Offers()
    card = cl.Message(content="Your decision: the vote is tied", id=card_step_id(TID, "e1"))
    await offers.offer("e1", card, actions_for(TIE, card.id))
    assert [label for _, label in page.held] == [
        "Pick 1 · analyst",
        "Pick 2 · risk",
        "Continue",
        "Write my own…",
    ]
    first.open = False  # the page moved on
    await offers.withdraw("e1", card)
    assert len(page.held) == 4  # what a user saw: buttons on a settled card
    _on(Socket(page))  # a new session serves the page (another process, after a restart, would do the same)
    await Offers.drop(every_decision_button(TID, [REFUND, TIE]))
    assert page.held == []


def test_a_decisions_buttons_keep_their_ids_and_the_style_sheets_prefixes() -> None:
    card = card_step_id(TID, "r1")
    ids = [a.id for a in actions_for(REFUND, card)]
    assert (
        ids == [a.id for a in actions_for(REFUND, card)] == [f"parley-approve-{card}", f"parley-deny-{card}"]
    )
    other = card_step_id(TID, "e1")
    assert len({a.id for a in actions_for(TIE, other)}) == 4  # a button each
    assert (
        actions_for(
            QuestionEvent(
                source="writer", content="Which region?", question_id="q1", timeout_s=None, default=""
            ),
            "x",
        )
        == []
    )
