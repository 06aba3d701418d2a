"""The cgroups of sandboxed calls (see parley.sandbox): one per call, with total memory and process caps, made
under parley's own cgroup (v2 where the memory and pids controllers are available there, else v1)."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["CGROUP_PREFIX", "Cgroup", "remove_stale_in", "v1_bases", "v2_base"]

CGROUP_PREFIX = "parley-sandbox-"


def _own_cgroups() -> dict[str, str]:
    """Controller (or "" for the v2 hierarchy) -> this process's path in it, from /proc/self/cgroup."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, controllers, path = line.split(":", 2)
            for name in controllers.split(",") if controllers else [""]:
                found[name] = path
    return found


def _cgroup_mounts() -> dict[str, str]:
    """Controller (or "" for cgroup2) -> mount point, from /proc/self/mounts."""
    found: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) < 4:
                continue
            point, kind, options = fields[1].replace("\\040", " "), fields[2], fields[3].split(",")
            if kind == "cgroup2":
                found.setdefault("", point)
            elif kind == "cgroup":
                for name in ("memory", "pids"):
                    if name in options:
                        found.setdefault(name, point)
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _counter(path: Path, key: str) -> int:
    for line in _read(path).splitlines():
        name, _, value = line.partition(" ")
        if name == key and value.strip().isdigit():
            return int(value)
    return 0


def v2_base() -> tuple[Path | None, str]:
    """A cgroup v2 folder under which calls get their own cgroup with memory and pids limits, or why not."""
    mount = _cgroup_mounts().get("")
    if not mount:
        return None, "no cgroup v2 hierarchy is mounted"
    configured = os.environ.get("PARLEY_SANDBOX_CGROUP")
    base = Path(configured) if configured else Path(mount + _own_cgroups().get("", "/").rstrip("/"))
    available = set(_read(base / "cgroup.controllers").split())
    if not {"memory", "pids"} <= available:
        return (
            None,
            f"the memory and pids controllers are not available in {base} (they are in cgroup v1 here?)",
        )
    enabled = set(_read(base / "cgroup.subtree_control").split())
    if not {"memory", "pids"} <= enabled:
        try:
            _write_file(base / "cgroup.subtree_control", "+memory +pids")
        except OSError as exc:
            if exc.errno != errno.EBUSY or configured:
                return None, f"cannot enable memory and pids for the cgroups under {base}: {exc.strerror}"
            # cgroup v2 gives controllers to child cgroups only of a cgroup without processes of its own, and
            # parley is in this one: move parley into a leaf of its own first, as systemd asks of the owner
            # of a delegated cgroup. If other processes share the cgroup, it still cannot be done.
            try:
                leaf = base / "parley"
                leaf.mkdir(exist_ok=True)
                _write_file(leaf / "cgroup.procs", str(os.getpid()))
                _write_file(base / "cgroup.subtree_control", "+memory +pids")
            except OSError as again:
                return None, (
                    f"cannot enable memory and pids for the cgroups under {base}: {again.strerror} "
                    "(other processes share parley's cgroup?)"
                )
    if not os.access(base, os.W_OK):
        return None, f"{base} is not writable by this user"
    return base, ""


def v1_bases() -> tuple[dict[str, Path] | None, str]:
    mounts, own = _cgroup_mounts(), _own_cgroups()
    bases: dict[str, Path] = {}
    for name in ("memory", "pids"):
        if name not in mounts:
            return None, f"no cgroup v1 {name} hierarchy is mounted"
        base = Path(mounts[name] + own.get(name, "/").rstrip("/"))
        if not base.is_dir():
            base = Path(mounts[name])
        if not os.access(base, os.W_OK):
            return None, f"{base} is not writable by this user"
        bases[name] = base
    return bases, ""


def _owner_alive(name: str) -> bool:
    """Whether the parley that made the cgroup `name` (`parley-sandbox-<pid>-<hex>`) still runs."""
    pid = name[len(CGROUP_PREFIX) :].partition("-")[0]
    if not pid.isdigit():
        return False  # not of the form parley makes (or from before it named its owner): nobody's
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # it exists, as another user
    return True


def remove_stale_in(bases: Sequence[str]) -> None:
    """Remove cgroups under `bases` of calls whose parley was killed (done when parley starts confining code).
    Only those of parleys that no longer run: another parley's cgroup is empty for a moment between its making
    and the call joining it, and must not be taken from under it."""
    for base in map(Path, bases):
        with contextlib.suppress(OSError):
            for entry in base.iterdir():
                if entry.name.startswith(CGROUP_PREFIX) and entry.is_dir() and not _owner_alive(entry.name):
                    with contextlib.suppress(OSError):
                        entry.rmdir()


class Cgroup:
    """One call's cgroup (one folder in v2, one per hierarchy in v1): total memory and process caps."""

    def __init__(self, kind: str, bases: Sequence[str], memory: int, pids: int) -> None:
        """`kind` "v2" (`bases`: the one folder) or "v1" (`bases`: the memory and the pids folders)."""
        self.kind = kind
        self.memory = memory
        self.pids = pids
        name = f"{CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(8)}"  # the owner's pid: see remove_stale_in
        self.dirs: list[Path] = []
        folders = [Path(b) / name for b in bases]
        self.mem_dir, self.pids_dir = folders[0], folders[-1]
        try:
            for folder in dict.fromkeys(folders):
                self._make(folder)
            self._limit()
        except BaseException:
            self.remove()
            raise
        self.procs = tuple(str(d / "cgroup.procs") for d in self.dirs)

    def _limit(self) -> None:
        memory, swap = (
            ("memory.max", "memory.swap.max")
            if self.kind == "v2"
            else ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")
        )
        _write_file(self.mem_dir / memory, str(self.memory))
        with contextlib.suppress(OSError):  # absent without swap accounting
            _write_file(self.mem_dir / swap, "0" if self.kind == "v2" else str(self.memory))
        _write_file(self.pids_dir / "pids.max", str(self.pids))

    def _make(self, path: Path) -> None:
        path.mkdir()
        self.dirs.append(path)

    def join(self) -> None:
        """Move the calling process into the cgroup (between fork and exec: its children follow)."""
        pid = str(os.getpid()).encode()
        for procs in self.procs:
            fd = os.open(procs, os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def oom_kills(self) -> int:
        """How many processes the kernel killed for going over the memory cap."""
        if self.kind == "v2":
            return _counter(self.mem_dir / "memory.events", "oom_kill")
        return _counter(self.mem_dir / "memory.oom_control", "oom_kill")

    def pids_refused(self) -> int:
        """How many forks the process cap refused."""
        return _counter(self.pids_dir / "pids.events", "max")

    def _pids(self) -> set[int]:
        found: set[int] = set()
        for d in self.dirs:
            found.update(int(p) for p in _read(d / "cgroup.procs").split() if p.isdigit())
        return found

    def remove(self, deadline_s: float = 5.0) -> None:
        """Kill whatever is still in the cgroup, then remove it (the kernel refuses while processes remain)."""
        end = time.monotonic() + deadline_s
        for d in self.dirs:
            if self.kind == "v2":
                with contextlib.suppress(OSError):
                    _write_file(d / "cgroup.kill", "1")
        while self.dirs:
            for pid in self._pids():
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
            for d in list(self.dirs):
                try:
                    d.rmdir()
                    self.dirs.remove(d)
                except FileNotFoundError:
                    self.dirs.remove(d)
                except OSError:
                    pass
            if not self.dirs or time.monotonic() > end:
                break
            time.sleep(0.02)  # killed processes take a moment to be reaped
