"""The built-in `ask_human` capability as an AutoGen tool: a role asks the human a question and waits for the
answer (the host's question; see parley.host)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Annotated, Any

from autogen_core import CancellationToken
from autogen_core.tools import BaseStreamTool
from pydantic import BaseModel

from ...host import ASK_HUMAN, QuestionHost
from .agent import ParleyNotice, shown_now

__all__ = ["AskHumanArgs", "AskHumanTool"]


class AskHumanArgs(BaseModel):
    question: Annotated[str, "One clear question for the human, with the options if there are any."]


class AskHumanTool(BaseStreamTool[AskHumanArgs, ParleyNotice, Any]):
    """Granted as `ask_human` in a role's tools. The question is shown to the human (web chat, terminal,
    or an evaluation's scripted human); the run waits for the answer or the team's question time-out. It returns
    text (AutoGen's type bound asks for a BaseModel, hence Any)."""

    def __init__(self, role: str, host: QuestionHost) -> None:
        super().__init__(
            AskHumanArgs,
            str,
            ASK_HUMAN,
            "Ask the human a clarifying question when the task is ambiguous or a decision is theirs. "
            "Returns their answer.",
        )
        self.role = role
        self.host = host

    async def run(self, args: AskHumanArgs, cancellation_token: CancellationToken) -> str:
        result = ""
        async for item in self.run_stream(args, cancellation_token):
            if isinstance(item, str):
                result = item
        return result

    async def run_stream(
        self,
        args: AskHumanArgs,
        cancellation_token: CancellationToken,
    ) -> AsyncGenerator[ParleyNotice | str, None]:
        question = args.question.strip()
        if not question:
            raise ValueError("the question is empty: ask something the human can answer")
        event, answer_of = self.host.open_question(self.role, question)
        for notice in shown_now(self.role, event):  # shown now, not after its answer
            yield notice
        answered = asyncio.ensure_future(answer_of)
        cancellation_token.link_future(answered)
        answer = await answered
        if answer.timed_out:
            yield f"(no answer in time) {answer.content}"
        else:
            yield f"The human answered: {answer.content}"
