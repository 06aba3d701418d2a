"""The built-in `ask_human` capability: a role asks the human a question and waits for the answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, Protocol

from autogen_core import CancellationToken
from autogen_core.tools import BaseStreamTool
from pydantic import BaseModel

from ._agent import ParleyNotice, shown_now
from .events import AnswerEvent, QuestionEvent

ASK_HUMAN = "ask_human"


class QuestionHost(Protocol):
    def open_question(self, source: str, question: str) -> tuple[QuestionEvent, asyncio.Future[AnswerEvent]]: ...


class AskHumanArgs(BaseModel):
    question: Annotated[str, "One clear question for the human, with the options if there are any."]


class AskHumanTool(BaseStreamTool[AskHumanArgs, ParleyNotice, str]):
    """Granted as `ask_human` in a role's tools. The question is shown to the human (web chat, terminal,
    or an evaluation's scripted human); the run waits for the answer or the team's question time-out."""

    def __init__(self, role: str, host: QuestionHost) -> None:
        super().__init__(
            AskHumanArgs, str, ASK_HUMAN,
            "Ask the human a clarifying question when the task is ambiguous or a decision is theirs. "
            "Returns their answer.",
        )
        self._role = role
        self._host = host

    async def run(self, args: AskHumanArgs, cancellation_token: CancellationToken) -> str:
        result = ""
        async for item in self.run_stream(args, cancellation_token):
            if isinstance(item, str):
                result = item
        return result

    async def run_stream(self, args: AskHumanArgs, cancellation_token: CancellationToken,
                         ) -> AsyncGenerator[ParleyNotice | str, None]:
        question = args.question.strip()
        if not question:
            raise ValueError("the question is empty: ask something the human can answer")
        event, answered = self._host.open_question(self._role, question)
        for notice in shown_now(self._role, event):  # shown now, not after its answer
            yield notice
        cancellation_token.link_future(answered)
        answer = await answered
        if answer.timed_out:
            yield f"(no answer in time) {answer.content}"
        else:
            yield f"The human answered: {answer.content}"
