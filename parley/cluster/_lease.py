"""One owner per run: a conversation's run belongs to the process holding its lease in the store.

The lease is renewed while the run goes on (`keep`), taken over when its holder stops renewing it (a process that
died), and fenced: each new holder gets a larger fence, and the store refuses a write made under an older one
(`LeaseLost`), so a process paused past its lease cannot write over its successor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..store import Lease, LeaseLost, Store

__all__ = ["Lease", "LeaseLost", "Leases"]

log = logging.getLogger("parley.cluster")

DEFAULT_TTL_S = 10.0
"""How long a lease lasts without renewal: how long a dead owner's runs wait before another process takes them."""


class Leases:
    """The run leases one process (`holder`) takes, keeps and gives up, each lasting `ttl_s` seconds unrenewed."""

    def __init__(self, store: Store, holder: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        if ttl_s <= 0:
            raise ValueError(f"a lease must last a while: ttl_s={ttl_s}")
        self.store = store
        self.name = holder
        """This process's name among the holders (unique per process: host, pid, a random part)."""
        self.ttl_s = ttl_s
        self._kept: set[_Kept] = set()
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self, tid: str, *, run_open: bool = True) -> Lease | None:
        """The lease of conversation `tid`, or None while another holder's is live. Ours again if we hold it (same
        fence); a larger fence if it was another's. `run_open`: a run goes on under it (`orphans` lists the thread
        if we die holding it)."""
        return await self.store.take_lease(tid, self.name, self.ttl_s, run_open=run_open)

    async def renew(self, lease: Lease) -> bool:
        """Extend the lease by the ttl; False if it is lost (taken over, or released)."""
        return await self.store.renew_lease(lease, self.ttl_s)

    async def release(self, lease: Lease, *, run_open: bool = False) -> None:
        """Give the lease up at once. `run_open=True`: the run is not over (this process is stopping), so another
        process should carry it on."""
        await self.store.release_lease(lease, run_open=run_open)

    async def holder(self, tid: str) -> str | None:
        """Who holds conversation `tid`'s live lease, if anyone."""
        return await self.store.lease_holder(tid)

    async def orphans(self) -> list[str]:
        """Conversations whose run is open while nobody holds them: their owner died or stopped mid-run."""
        return await self.store.orphaned_runs()

    def keep(self, lease: Lease, on_lost: Callable[[], None]) -> asyncio.Task[None]:
        """Renew `lease` every third of the ttl until the task is cancelled. Calls `on_lost` (and ends) once the
        lease is lost, or once the store could not be reached for a whole ttl: by then another process may have
        taken it over. Every lease this process keeps is renewed in one statement."""
        return asyncio.create_task(self._keep(lease, on_lost), name=f"parley-lease-{lease.thread_id}")

    async def _keep(self, lease: Lease, on_lost: Callable[[], None]) -> None:
        loop = asyncio.get_running_loop()
        kept = _Kept(lease, loop.create_future(), loop.time())
        self._kept.add(kept)
        if self._renewer is None or self._renewer.done():
            self._renewer = loop.create_task(self._renew_all(), name="parley-lease-renewals")
        try:
            await kept.lost
        finally:
            self._kept.discard(kept)
        on_lost()

    async def _renew_all(self) -> None:
        """Renew every kept lease each third of the ttl, in one statement, while any is kept."""
        loop = asyncio.get_running_loop()
        while self._kept:
            await asyncio.sleep(self.ttl_s / 3)
            kept = [k for k in self._kept if not k.lost.done()]
            if not kept:
                continue
            try:
                alive = await self.store.renew_leases([k.lease for k in kept], self.ttl_s)
            # The store out of reach (StoreError), or worse: each lease is let go once a whole ttl passed unrenewed.
            except Exception as exc:
                log.warning("could not renew %d leases: %s", len(kept), exc)
                for k in kept:
                    if loop.time() - k.renewed >= self.ttl_s and not k.lost.done():
                        k.lost.set_result(None)
                continue
            for k in kept:
                if (k.lease.thread_id, k.lease.fence) in alive:
                    k.renewed = loop.time()
                elif not k.lost.done():
                    k.lost.set_result(None)


@dataclass(eq=False)
class _Kept:
    """A lease being kept: lost once its renewal fails (or the store was out of reach for a whole ttl)."""

    lease: Lease
    lost: asyncio.Future[None]
    renewed: float
