"""The judge model of an evaluation (`--judge-model`): yes/no questions about a run, metered apart."""

from __future__ import annotations


class LiveJudge:
    """A live model that answers a yes/no question about a transcript (JSON-schema constrained where it can be).

    Its calls are on a meter of their own: reported after the evaluation, never mixed into a team's figures.
    """

    def __init__(self, model: str) -> None:
        from ..engine.autogen.models import ModelPool
        from ..models import Meter

        self.model = model
        self.pool = ModelPool(Meter())
        self.pool.capabilities(model)  # a bad model string fails here, before any scenario runs

    async def __call__(self, question: str, task: str, transcript: str) -> tuple[bool, str]:
        answer = await self.pool.choose(
            self.model,
            "judge",
            system="You grade a team's conversation. Answer strictly.",
            user=f"Task: {task}\n\nConversation:\n{transcript}\n\nQuestion: {question}\nAnswer yes or no.",
            choices=["yes", "no"],
            field="answer",
        )
        if answer is None:
            raise ValueError("the judge's answer was neither yes nor no")
        return answer == "yes", f"the judge ({self.model}) answered {answer}"

    async def close(self) -> None:
        await self.pool.close()

    def usage(self) -> str:
        meter = self.pool.meter
        return (
            f"judge ({self.model}): {len(meter.calls)} calls, {meter.prompt_tokens:,} prompt + "
            f"{meter.completion_tokens:,} completion tokens (not in the teams' figures)"
        )
