"""Embedded model speed: the local model driven directly by its runtime, and through parley.

Same prompts, same max_tokens, greedy sampling, prompt cache off, interleaved repetitions, one process:

- `direct`: xllamacpp's server object, `handle_chat_completions(request, callback)`, streamed in-process;
- `http`: the same server's `/v1/chat/completions`, streamed over loopback HTTP by a bare stdlib client;
- `sdk`: the OpenAI SDK (`AsyncOpenAI`, the one autogen-ext drives) streaming from that endpoint, alone;
- `parley`: the metered client parley builds for `local`, `create_stream` (what every agent calls): it calls
  `handle_chat_completions` in-process from a worker thread, without HTTP or the OpenAI SDK;
- `run`: a one-agent parley Run (team set-up, AutoGen, events), greedy too but with parley's system prompt.

Tokens are the server's own count (`usage`), the same counter for every path. `loop CPU` is the CPU
time of the calling (event-loop) thread per call: the client's own work, which on 2 cores competes
with llama.cpp's 2 threads, and which unlike wall time hardly moves with other processes' load. tok/s is end to end
(completion tokens / wall time from request to last chunk); decode tok/s leaves out the first token.
Ratios are the medians of per-pair ratios: each parley measurement against the direct one next to it,
so load from other processes on this shared machine cancels out as far as it can.

    .venv/bin/python -m bench.embedded [--smoke] [--budget SECONDS]
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import openai
from autogen_core.models import CreateResult, SystemMessage, UserMessage

from bench._common import parser, percentile, save, table

SYSTEM = "You are a helpful assistant. Answer in plain prose."
PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain to a new employee why customer churn matters and how a support team can reduce it.",
    "Describe a walk through a busy market on a Saturday morning, with its sounds and smells.",
)
FREQUENCY_PENALTY = 0.4
"""parley's local client sends this on every call (see parley/engine/autogen/models/local.py); direct calls send it too."""
PATHS = ("direct", "http", "sdk", "parley", "run")


class Sample(dict[str, Any]):
    """One measured call: path, prompt, ttft_s, total_s, prompt_tokens, completion_tokens."""


def _sample(path: str, prompt: int, t_first: float | None, total: float, usage: Any) -> Sample:
    if usage is None:
        raise RuntimeError(f"{path}: the server reported no usage")
    p = usage["prompt_tokens"] if isinstance(usage, dict) else usage.prompt_tokens
    c = usage["completion_tokens"] if isinstance(usage, dict) else usage.completion_tokens
    first = t_first if t_first is not None else total
    decode = (c - 1) / (total - first) if c > 1 and total > first else 0.0
    return Sample(
        path=path,
        prompt=prompt,
        ttft_s=first,
        total_s=total,
        prompt_tokens=p,
        completion_tokens=c,
        tok_s=c / total if total else 0.0,
        decode_tok_s=decode,
    )


def _request(prompt: str, max_tokens: int) -> dict[str, Any]:
    """The body parley's client sends for this prompt (autogen-ext adds `name` to user messages)."""
    from parley.engine.autogen.models.local import MODEL_ALIAS

    return {
        "model": MODEL_ALIAS,
        "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": prompt, "name": "user"},
        ],
        "max_tokens": max_tokens,
        "temperature": 0,
        "frequency_penalty": FREQUENCY_PENALTY,
        "stream": True,
        "stream_options": {"include_usage": True},
        "cache_prompt": False,
    }


def _has_text(chunk: dict[str, Any]) -> bool:
    choices = chunk.get("choices") or []
    return bool(choices and (choices[0].get("delta") or {}).get("content"))


def measure_direct(server: Any, i: int, max_tokens: int) -> Sample:
    """In-process: the callback runs on this thread for every chunk, no socket involved."""
    state: dict[str, Any] = {"first": None, "usage": None}
    t0 = time.perf_counter()

    def on_chunk(chunk: dict[str, Any]) -> bool:
        if state["first"] is None and _has_text(chunk):
            state["first"] = time.perf_counter() - t0
        if chunk.get("usage"):
            state["usage"] = chunk["usage"]
        return False  # False: keep streaming

    server.handle_chat_completions(_request(PROMPTS[i], max_tokens), on_chunk)
    return _sample("direct", i, state["first"], time.perf_counter() - t0, state["usage"])


class HttpDirect:
    """A bare HTTP client (stdlib), to tell the socket's cost from parley's. The server closes streamed
    connections, so each call connects anew (a fraction of a millisecond on loopback)."""

    def __init__(self, base_url: str) -> None:
        url = urlsplit(base_url)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.path = url.path.rstrip("/") + "/chat/completions"

    def measure(self, i: int, max_tokens: int) -> Sample:
        first = usage = None
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=600)
        conn.request(
            "POST",
            self.path,
            body=json.dumps(_request(PROMPTS[i], max_tokens)),
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        for raw in resp:
            line = raw.strip()
            if line == b"data: [DONE]":
                break
            if not line.startswith(b"data: "):
                continue
            chunk = json.loads(line[6:])
            if first is None and _has_text(chunk):
                first = time.perf_counter() - t0
            usage = chunk.get("usage") or usage
        total = time.perf_counter() - t0
        conn.close()
        return _sample("http", i, first, total, usage)


async def measure_sdk(sdk: Any, i: int, max_tokens: int) -> Sample:
    """The OpenAI SDK alone, as autogen-ext calls it: what parsing the stream costs before AutoGen sees it."""
    body = _request(PROMPTS[i], max_tokens)
    extra = {"cache_prompt": body.pop("cache_prompt")}
    first = usage = None
    t0 = time.perf_counter()
    stream = await sdk.chat.completions.create(**body, extra_body=extra)
    async for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter() - t0
        usage = chunk.usage or usage
    return _sample("sdk", i, first, time.perf_counter() - t0, usage)


async def measure_parley(client: Any, i: int, max_tokens: int, path: str = "parley") -> Sample:
    """parley's metered client for `local`, streamed, as an agent calls it (greedy and uncached for the bench)."""
    first = None
    result: CreateResult | None = None
    t0 = time.perf_counter()
    messages = [SystemMessage(content=SYSTEM), UserMessage(content=PROMPTS[i], source="user")]
    args = {"temperature": 0, "max_tokens": max_tokens, "extra_body": {"cache_prompt": False}}
    async for item in client.create_stream(messages, extra_create_args=args):
        if isinstance(item, CreateResult):
            result = item
        elif first is None and item:
            first = time.perf_counter() - t0
    assert result is not None
    return _sample(path, i, first, time.perf_counter() - t0, result.usage)


TEAM = """\
name: bench-one-agent
pattern: round_robin
model: local
context: {window: all}
roles:
  - name: writer
    prompt: "%s"
termination: {max_turns: 1}
"""


async def measure_run(team: Path, i: int, max_tokens: int) -> Sample:
    """A one-agent parley Run, from `start()` to its result; the agent's calls made greedy like the others."""
    from parley import Conversation
    from parley.events import ChunkEvent, RunResult, UsageEvent

    t0 = time.perf_counter()
    conv = Conversation(team)
    # Bench-only: the shipped sampling is temperature 0.7; make this run's call comparable with the others.
    for client in conv.pool._shared.values():
        client.defaults.update(temperature=0, max_tokens=max_tokens, cache_prompt=False)  # type: ignore[attr-defined]
    first = None
    usage: UsageEvent | None = None
    run = conv.start(PROMPTS[i])
    async for ev in run:
        if isinstance(ev, ChunkEvent) and first is None and ev.content:
            first = time.perf_counter() - t0
        elif isinstance(ev, UsageEvent):
            usage = ev
        elif isinstance(ev, RunResult) and ev.stop_reason not in ("max_turns", "completed"):
            raise RuntimeError(f"the one-agent run ended with {ev.stop_reason}: {ev.detail}")
    total = time.perf_counter() - t0
    await conv.close()
    return _sample("run", i, first, total, usage)


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def summarise(samples: list[Sample]) -> dict[str, Any]:
    """Per path: medians and p90; per other path: medians of its ratios to the direct call of the same group."""
    out: dict[str, Any] = {}
    for path in PATHS:
        rows = [s for s in samples if s["path"] == path]
        if not rows:
            continue
        out[path] = {
            "n": len(rows),
            "tok_s": _median([s["tok_s"] for s in rows]),
            "decode_tok_s": _median([s["decode_tok_s"] for s in rows]),
            "best_tok_s": max(s["tok_s"] for s in rows),
            "ttft_s": _median([s["ttft_s"] for s in rows]),
            "ttft_p90_s": percentile([s["ttft_s"] for s in rows], 90),
            "total_s": _median([s["total_s"] for s in rows]),
            "loop_cpu_s": _median([s["loop_cpu_s"] for s in rows]),
            "prompt_tokens": sorted({s["prompt_tokens"] for s in rows}),
            "completion_tokens": sorted({s["completion_tokens"] for s in rows}),
        }
    direct = {s["group"]: s for s in samples if s["path"] == "direct"}
    for path in PATHS[1:]:
        pairs = [(s, direct[s["group"]]) for s in samples if s["path"] == path and s["group"] in direct]
        if path in out and pairs:
            out[path]["ratio_tok_s"] = _median([s["tok_s"] / d["tok_s"] for s, d in pairs])
            out[path]["ratio_decode_tok_s"] = _median(
                [s["decode_tok_s"] / d["decode_tok_s"] for s, d in pairs if d["decode_tok_s"]]
            )
            out[path]["ratio_ttft"] = _median([s["ttft_s"] / d["ttft_s"] for s, d in pairs])
            out[path]["overhead_s"] = _median([s["total_s"] - d["total_s"] for s, d in pairs])
            out[path]["pairs_at_or_above_95"] = sum(s["tok_s"] >= 0.95 * d["tok_s"] for s, d in pairs) / len(
                pairs
            )
    return out


async def _measure_all(smoke: bool, budget_s: float) -> tuple[list[Sample], dict[str, Any]]:
    from parley.engine.autogen.models import ModelPool
    from parley.engine.autogen.models.local import base_url as local_base_url
    from parley.engine.autogen.models.local import local_server
    from parley.models import Meter

    os.environ.pop("PARLEY_MODEL", None)  # it would outrank the one-agent team's `model: local`
    max_tokens = 8 if smoke else 96
    groups = 1 if smoke else 10 * len(PROMPTS)
    min_groups = 1 if smoke else 2 * len(PROMPTS)
    base_url = local_base_url()  # starts the in-process server parley uses; every path drives this one
    server = local_server()
    pool = ModelPool(Meter())
    client = pool.client("local", "bench")
    folder = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    team = folder / "one-agent.yaml"
    team.write_text(TEAM % SYSTEM, encoding="utf-8")
    http_direct = HttpDirect(base_url)
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="local", max_retries=0)
    measures: dict[str, Callable[[int], Any]] = {
        "direct": lambda i: measure_direct(server, i, max_tokens),
        "http": lambda i: http_direct.measure(i, max_tokens),
        "sdk": lambda i: measure_sdk(sdk, i, max_tokens),
        "parley": lambda i: measure_parley(client, i, max_tokens),
        "run": lambda i: measure_run(team, i, max_tokens),
    }

    async def one(path: str, i: int) -> Sample:
        cpu = time.thread_time()
        got = measures[path](i)
        sample: Sample = await got if asyncio.iscoroutine(got) else got
        sample["loop_cpu_s"] = time.thread_time() - cpu
        return sample

    if not smoke:
        for path in PATHS:  # warm-up: first calls pay for connections, imports and caches
            await one(path, 0)
    samples: list[Sample] = []
    started = time.perf_counter()
    done = 0
    for g in range(groups):
        if g >= min_groups and time.perf_counter() - started > budget_s:
            break
        # A group: every path on one prompt, back to back; who goes first rotates from group to group.
        k = g % len(PATHS)
        for path in PATHS[k:] + PATHS[:k]:
            s = await one(path, g % len(PROMPTS))
            s["group"] = g
            samples.append(s)
        done = g + 1
    await pool.close()
    await sdk.close()
    meter_calls = pool.meter.calls
    settings = {
        "max_tokens": max_tokens,
        "groups": done,
        "prompts": min(done, len(PROMPTS)),
        "temperature": 0,
        "cache_prompt": False,
        "frequency_penalty": FREQUENCY_PENALTY,
        "seconds": round(time.perf_counter() - started, 1),
        "n_threads": int(os.environ.get("PARLEY_LOCAL_THREADS", str(os.cpu_count() or 2))),
        "meter_estimated_calls": sum(c.estimated for c in meter_calls),
        "meter_calls": len(meter_calls),
    }
    return samples, settings


def run(smoke: bool, budget_s: float = 120.0) -> dict[str, Any]:
    load_before = os.getloadavg()
    samples, settings = asyncio.run(_measure_all(smoke, budget_s))
    summary = summarise(samples)
    load_after = os.getloadavg()
    rows = []
    for path in PATHS:
        s = summary.get(path)
        if s is None:
            continue
        rows.append(
            [
                path,
                s["n"],
                s["tok_s"],
                s["decode_tok_s"],
                s["ttft_s"] * 1000,
                s["ttft_p90_s"] * 1000,
                s["loop_cpu_s"] * 1000,
                s.get("ratio_tok_s", 1.0),
                s.get("ratio_ttft", 1.0),
                s.get("overhead_s", 0.0) * 1000,
            ]
        )
    table(
        [
            "path",
            "calls",
            "tok/s",
            "decode tok/s",
            "TTFT ms",
            "TTFT p90 ms",
            "loop CPU ms",
            "tok/s ÷ direct",
            "TTFT ÷ direct",
            "extra ms/call",
        ],
        rows,
        title=f"Embedded model (SmolLM2-135M, xllamacpp), {settings['max_tokens']} tokens, greedy, "
        f"{settings['groups']} interleaved groups over {settings['prompts']} prompts; medians",
    )
    verdict = summary.get("parley", {}).get("ratio_tok_s", 0.0)
    print(
        f"\nparley's client: {verdict:.3f}× direct tok/s (target ≥ 0.95×: {'met' if verdict >= 0.95 else 'missed'}); "
        f"load average {load_before[0]:.2f} → {load_after[0]:.2f} on {os.cpu_count()} cores"
        + (
            "; the machine was busy: wall-time figures are noisy, loop CPU is not"
            if load_before[0] > 1.5
            else ""
        )
    )
    return {
        "settings": settings,
        "summary": summary,
        "samples": samples,
        "load_average": {"before": load_before, "after": load_after},
        "target_tok_s_ratio": 0.95,
        "target_met": verdict >= 0.95,
    }


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--budget",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="start no new group of calls after this long (at least two per prompt run)",
    )
    args = p.parse_args(argv)
    data = run(args.smoke, args.budget)
    save("embedded", data, smoke=args.smoke)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
