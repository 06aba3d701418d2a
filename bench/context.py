"""Context growth: prompt tokens of a 4-agent chat at 10, 20, 40 and 80 messages.

Three ways side by side, counted the same way (cl100k tokens of the message contents each model call
receives; 4 agents; every reply exactly 80 tokens):

- AutoGen naive: RoundRobinGroupChat / SelectorGroupChat, every agent and the selector see the whole history;
- AutoGen buffered: each agent on BufferedChatCompletionContext(buffer_size=6);
- parley's default policy (the task, the latest human messages, a 4-turn window; compact selector view),
  and, for reference, the same with a running summary (`context: {summary: true}`).

Run: .venv/bin/python -m bench.context
"""

from __future__ import annotations

import asyncio
import tempfile
import textwrap
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.conditions import MaxMessageTermination
from autogen_agentchat.teams import RoundRobinGroupChat, SelectorGroupChat
from autogen_core import CancellationToken
from autogen_core.model_context import BufferedChatCompletionContext
from autogen_core.models import ChatCompletionClient, CreateResult, LLMMessage, ModelInfo, RequestUsage
from autogen_core.tools import Tool, ToolSchema

from bench._common import parser, save, table
from parley import Conversation
from parley.models import SELECTOR, encoding

ROLES = {
    "researcher": "finds facts and sources",
    "analyst": "turns facts into figures and findings",
    "writer": "drafts the memo",
    "reviewer": "checks the draft and asks for fixes",
}
TASK = "Write a one-page memo on why our small-business customers churn and what to do about it."
REPLY_TOKENS = 80
BASELINES = {"naive": 256_240, "naive selector": 281_650, "buffered": 38_754}
"""AutoGen 0.7.5 at 80 messages, as measured when the issue was filed."""
SIZES = (10, 20, 40, 80)
_WORDS = (
    "customers leave when onboarding is slow, support answers late, prices rise without notice, and the "
    "product misses features their competitors ship; interviews, cohort figures and ticket logs agree on "
    "this, so the memo should rank causes by revenue lost and propose fixes with owners and dates. "
)


def _tokens(text: str) -> int:
    return len(encoding().encode(text))


def reply(who: str, i: int) -> str:
    """A reply of exactly REPLY_TOKENS cl100k tokens, different for every speaker and turn."""
    enc = encoding()
    ids = enc.encode(f"{who} note {i}: " + _WORDS * 4)
    while True:
        text = enc.decode(ids[:REPLY_TOKENS])
        if len(enc.encode(text)) == REPLY_TOKENS:
            return text
        ids = ids[1:]


def _content_tokens(messages: Sequence[LLMMessage]) -> int:
    total = 0
    for m in messages:
        content: Any = m.content
        if isinstance(content, str):
            total += _tokens(content)
        elif isinstance(content, list):
            total += sum(
                _tokens(str(getattr(c, "content", None) or getattr(c, "arguments", "") or c)) for c in content
            )
    return total


class Recorder(ChatCompletionClient):
    """A model that answers from `answer(call_number)` and records the content tokens of every call."""

    def __init__(self, answer: Callable[[int, Sequence[LLMMessage]], str]) -> None:
        self.answer = answer
        self.prompt_tokens: list[int] = []
        self.prompts: list[Sequence[LLMMessage]] = []

    async def create(
        self,
        messages: Sequence[LLMMessage],
        *,
        tools: Sequence[Tool | ToolSchema] = (),
        tool_choice: Any = "auto",
        json_output: Any = None,
        extra_create_args: Mapping[str, Any] = {},
        cancellation_token: CancellationToken | None = None,
    ) -> CreateResult:
        self.prompt_tokens.append(_content_tokens(messages))
        self.prompts.append(list(messages))
        text = self.answer(len(self.prompt_tokens) - 1, messages)
        usage = RequestUsage(prompt_tokens=self.prompt_tokens[-1], completion_tokens=_tokens(text))
        return CreateResult(finish_reason="stop", content=text, usage=usage, cached=False)

    async def create_stream(self, messages: Sequence[LLMMessage], **kwargs: Any) -> AsyncGenerator[Any, None]:  # type: ignore[override]
        yield await self.create(messages, **kwargs)

    async def close(self) -> None:
        return None

    def actual_usage(self) -> RequestUsage:
        return RequestUsage(prompt_tokens=0, completion_tokens=0)

    total_usage = actual_usage

    def count_tokens(self, messages: Sequence[LLMMessage], **kwargs: Any) -> int:
        return _content_tokens(messages)

    def remaining_tokens(self, messages: Sequence[LLMMessage], **kwargs: Any) -> int:
        return 1_000_000

    @property
    def capabilities(self) -> Any:
        return {"vision": False, "function_calling": False, "json_output": False}

    @property
    def model_info(self) -> ModelInfo:
        return {
            "vision": False,
            "function_calling": False,
            "json_output": False,
            "family": "unknown",
            "structured_output": False,
        }


async def autogen(n: int, *, selector: bool, buffered: bool) -> dict[str, int]:
    """Prompt tokens of AutoGen 0.7.5 with its defaults: agents, selector."""
    names = list(ROLES)
    agents, recorders = [], []
    for name in names:
        said = iter(range(n))
        rec = Recorder(lambda _i, _m, who=name, said=said: reply(who, next(said)))  # type: ignore[misc]
        recorders.append(rec)
        context = BufferedChatCompletionContext(buffer_size=6) if buffered else None
        agents.append(AssistantAgent(name, model_client=rec, description=ROLES[name], model_context=context))
    stop = MaxMessageTermination(n + 1)
    picker = Recorder(lambda i, _m: names[i % len(names)])
    team = (
        SelectorGroupChat(
            agents, model_client=picker, termination_condition=stop, allow_repeated_speaker=True
        )
        if selector
        else RoundRobinGroupChat(agents, termination_condition=stop)
    )
    await team.run(task=TASK)
    prompts = [p for r in recorders for p in r.prompts]
    return {
        "agents": sum(sum(r.prompt_tokens) for r in recorders),
        "selector": sum(picker.prompt_tokens),
        "calls": len(prompts),
        "calls_with_task": sum(any(TASK in str(m.content) for m in p) for p in prompts),
    }


def _parley_files(folder: Path, n: int, summary: bool) -> tuple[Path, Path]:
    per_role = {name: [reply(name, i) for i in range(n)] for name in ROLES}
    roles = "\n".join(
        f"  - name: {name}\n    description: {desc}\n    prompt: You are the team's {name}; you {desc}."
        for name, desc in ROLES.items()
    )
    team = folder / "team.yaml"
    team.write_text(
        textwrap.dedent(f"""\
        name: churn-memo
        pattern: selector
        roles:
        {{roles}}
        termination: {{{{max_turns: {n}}}}}
        """).format(roles=roles)
        + ("context: {summary: true}\n" if summary else ""),
        encoding="utf-8",
    )
    script = folder / "script.yaml"
    lines = ["roles:"] + [
        f"  {name}:\n" + "".join(f"    - {r!r}\n" for r in replies) for name, replies in per_role.items()
    ]
    lines.append("selector: [" + ", ".join(list(ROLES)[i % len(ROLES)] for i in range(n)) + "]")
    script.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return team, script


async def parley_run(n: int, *, summary: bool = False) -> dict[str, int]:
    """Prompt tokens of a parley selector team on its default context policy (the scripted model records calls)."""
    with tempfile.TemporaryDirectory() as tmp:
        team, script = _parley_files(Path(tmp), n, summary)
        conv = Conversation(team, model=f"scripted:{script}")
        async for _ in conv.start(TASK):
            pass
        calls = conv.pool.scripts[0].calls
        agent_calls = [c for c in calls if c.who in ROLES]
        return {
            "agents": sum(_content_tokens(c.messages) for c in agent_calls),
            "selector": sum(_content_tokens(c.messages) for c in calls if c.who == SELECTOR),
            "summariser": sum(_content_tokens(c.messages) for c in calls if c.who == "summariser"),
            "calls": len(agent_calls),
            "calls_with_task": sum(any(TASK in str(m.content) for m in c.messages) for c in agent_calls),
            "metered_prompt_tokens": conv.meter.prompt_tokens,
        }


async def measure(sizes: Sequence[int]) -> dict[str, dict[int, dict[str, int]]]:
    out: dict[str, dict[int, dict[str, int]]] = {
        "autogen naive": {},
        "autogen naive selector": {},
        "autogen buffered": {},
        "parley": {},
        "parley + summary": {},
    }
    for n in sizes:
        out["autogen naive"][n] = await autogen(n, selector=False, buffered=False)
        out["autogen naive selector"][n] = await autogen(n, selector=True, buffered=False)
        out["autogen buffered"][n] = await autogen(n, selector=False, buffered=True)
        out["parley"][n] = await parley_run(n)
        out["parley + summary"][n] = await parley_run(n, summary=True)
    return out


def run(smoke: bool) -> dict[str, Any]:
    sizes = (4, 8) if smoke else SIZES
    figures = asyncio.run(measure(sizes))
    rows = []
    for name, by_n in figures.items():
        for n, f in by_n.items():
            total = f["agents"] + f["selector"] + f.get("summariser", 0)
            rows.append(
                [
                    name,
                    n,
                    f["agents"],
                    f["selector"],
                    f.get("summariser", 0),
                    total,
                    f"{f['calls_with_task']}/{f['calls']}",
                ]
            )
    table(
        ["method", "messages", "agents", "selector", "summariser", "total", "task in call"],
        rows,
        title="Prompt tokens (cl100k, message contents), 4 agents, 80-token replies",
    )
    top = sizes[-1]
    p = figures["parley"][top]
    parley_total = p["agents"] + p["selector"]
    checks = {
        "parley_total_at_max": parley_total,
        "selector_over_agents": round(p["selector"] / p["agents"], 3),
        "growth_last_doubling": round(
            parley_total
            / max(1, figures["parley"][sizes[-2]]["agents"] + figures["parley"][sizes[-2]]["selector"]),
            3,
        ),
        "task_in_every_call": p["calls_with_task"] == p["calls"],
        "vs_naive_with_selector": round(
            parley_total
            / (figures["autogen naive"][top]["agents"] + figures["autogen naive selector"][top]["selector"]),
            4,
        ),
        "vs_buffered": round(p["agents"] / figures["autogen buffered"][top]["agents"], 3),
    }
    baseline_rows = []
    if top == 80:
        measured = {
            "naive": figures["autogen naive"][80]["agents"],
            "naive selector": figures["autogen naive selector"][80]["selector"],
            "buffered": figures["autogen buffered"][80]["agents"],
        }
        for key, expected in BASELINES.items():
            baseline_rows.append([key, expected, measured[key], round(measured[key] / expected, 3)])
        print()
        table(["AutoGen baseline at 80", "issue", "measured here", "ratio"], baseline_rows)
    print()
    table(["check", "value"], [[k, str(v)] for k, v in checks.items()], title=f"parley at {top} messages")
    data = {
        "sizes": list(sizes),
        "figures": {k: {str(n): f for n, f in v.items()} for k, v in figures.items()},
        "checks": checks,
        "baselines": {r[0]: {"issue": r[1], "measured": r[2]} for r in baseline_rows},
    }
    save("context", data, smoke=smoke)
    return data


def main(argv: list[str] | None = None) -> int:
    args = parser(__doc__.splitlines()[0]).parse_args(argv)
    run(args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
