"""Commands to Redis packed by hiredis, in C.

redis-py reads Redis's replies with hiredis (the `redis[hiredis]` extra), but its asyncio connections pack every
command in Python, argument by argument; only its blocking client packs with hiredis. A web replica's one read of
every stream it follows names each of them (two arguments per stream), and a worker adds an entry per streamed
piece: packing was 3 to 4 % of each process's CPU in a cluster at 200 conversations. `packed_in_c(cls)` is the
connection class `cls` (plain, TLS or Unix socket, as the URL says) with hiredis's `pack_command`; redis-py takes it
through its public `connection_class` option. What hiredis cannot pack (a memoryview, text UTF-8 cannot encode, a
connection told another encoding) is packed as before.
"""

from __future__ import annotations

import codecs
import functools
from typing import Any, cast

import hiredis
from redis.asyncio.connection import AbstractConnection
from redis.typing import EncodableT

__all__ = ["packed_in_c"]


class _HiredisPacking(AbstractConnection):
    _utf8: bool | None = None
    """Whether this connection encodes text as UTF-8, as hiredis does (a URL may say `?encoding=`)."""

    def pack_command(self, *args: EncodableT) -> list[bytes]:
        if self._utf8 is None:
            self._utf8 = codecs.lookup(self.encoder.encoding).name == "utf-8"
        if not self._utf8:
            return super().pack_command(*args)
        name = args[0]
        if isinstance(name, str):  # "CONFIG GET" and the like go as separate words, as redis-py sends them
            args = (*name.encode().split(), *args[1:])
        elif isinstance(name, bytes) and b" " in name:
            args = (*name.split(), *args[1:])
        try:
            return [hiredis.pack_command(cast(Any, args))]  # its hints say a 1-tuple: any tuple is packed
        except (TypeError, UnicodeError):
            # A memoryview, a bool, a lone surrogate: redis-py's own packing (its DataError, and its encoder's
            # errors= for what UTF-8 cannot encode).
            return super().pack_command(*args)


@functools.cache
def packed_in_c(cls: type[AbstractConnection]) -> Any:
    """`cls` packing its commands with hiredis."""
    return type(cls.__name__, (_HiredisPacking, cls), {"__module__": __name__})
