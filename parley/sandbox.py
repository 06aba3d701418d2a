"""Confinement for code parley runs on a model's behalf (run_python): bubblewrap namespaces plus a cgroup.

One sandbox per call, each guarantee from a kernel mechanism rather than from hand-made checks:

- **the process tree dies with the call**: bubblewrap starts the command as PID 1 of a new PID namespace
  (`--unshare-pid --as-pid-1`); when it ends, or when bubblewrap or parley dies (`--die-with-parent`), the
  kernel kills every process left in the namespace, `setsid()` or not. The call's cgroup is emptied too;
- **a private file system**: a new mount namespace whose root holds only `/usr` (and the `/bin`, `/lib*`
  links), the interpreter's own install, a few files of `/etc` the dynamic loader reads, a fresh `/proc`
  and `/dev`, all read-only, plus three empty tmpfs: `/tmp`, `/dev/shm` and `/sandbox` (the code and its
  working folder). Parley's data folder, home folders, the virtualenv and other runs are not mounted at
  all; nothing of a run is written to the host's disk, so nothing stays behind when parley is killed;
- **its own identity**: a user namespace (`--unshare-user --disable-userns`) with no capabilities; when
  parley runs as root, the call runs as a fresh uid of its own from a reserved range, never root and never
  shared with another call; otherwise as parley's user, which it cannot use against parley: parley is in
  another PID namespace, so the code can neither see nor signal it;
- **a total memory and process cap per call**: a cgroup of its own (v2 where the memory and pids
  controllers are available there, else the v1 memory and pids hierarchies), created inside parley's own
  cgroup, with `memory.max`/`memory.limit_in_bytes` (swap included) and `pids.max`;
- **no network**: a new network namespace with only a loopback interface, where the kernel allows it.

`probe()` finds once whether this machine provides all of it; where something is missing run_python
refuses to run code and says what to install or enable. `guarantees()` lists each guarantee for
`parley doctor`.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ._cgroup import Cgroup, remove_stale_in, v1_bases, v2_base

__all__ = [
    "Cgroup",
    "Missing",
    "Setup",
    "bwrap_command",
    "guarantees",
    "new_cgroup",
    "preexec",
    "probe",
    "remove_stale",
]

SANDBOX = "/sandbox"
"""The tmpfs holding the code (`/sandbox/main.py`) and its working folder (`/sandbox/work`)."""
PATH = "/usr/bin:/bin"
UID_BASE = 0x60000000
"""Fresh uids for calls when parley runs as root come from [UID_BASE, UID_BASE + UID_SPAN): far above
the ranges distributions hand out to users (< 60000) and to container subordinate ids (100000 + 65536 n)."""
UID_SPAN = 0x10000000
SHARE_NETWORK = "PARLEY_SANDBOX_SHARE_NETWORK"
"""Set to 1 to run code where the kernel refuses a network namespace (the code then shares parley's network)."""
_PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)
_lock = threading.Lock()
_cache: Setup | Missing | None = None


@dataclass(frozen=True)
class Setup:
    """How calls are confined on this machine (found once by `probe`)."""

    python: str
    """The interpreter run inside the sandbox."""
    binds: tuple[str, ...]
    """Folders bound read-only besides /usr: the interpreter's install when it lives elsewhere."""
    network: str
    """"netns" (no network) or "none" (the kernel did not allow a network namespace)."""
    cgroup: str
    """"v2" or "v1": where the total memory and process caps come from."""
    fresh_uid: bool
    """Whether each call runs as a uid of its own (parley runs as root)."""
    bwrap: str = "/usr/bin/bwrap"
    cgroup_bases: tuple[str, ...] = ()
    """Where calls' cgroups are made: the v2 folder, or the v1 memory and pids folders."""


@dataclass(frozen=True)
class Missing:
    """Why code cannot be confined here: (what is missing, how to enable it) pairs."""

    items: tuple[tuple[str, str], ...]
    partial: Setup | None = None
    """The sandbox found without what is missing (namespaces without a cgroup), to report what does hold."""

    def __str__(self) -> str:
        return "; ".join(f"{what} ({how})" for what, how in self.items)


def new_cgroup(setup: Setup, memory: int, pids: int) -> Cgroup:
    """A call's own cgroup with these total caps (memory in bytes, processes)."""
    return Cgroup(setup.cgroup, setup.cgroup_bases, memory, pids)


def remove_stale(setup: Setup) -> None:
    """Remove the cgroups of calls whose parley was killed (done when parley starts confining code)."""
    remove_stale_in(setup.cgroup_bases)


# --- the sandbox command ---------------------------------------------------------------------------------


def bwrap_path() -> str | None:
    return shutil.which("bwrap", path="/usr/bin:/bin:/usr/local/bin")


def _root_links() -> Iterator[str]:
    """/bin, /lib, /lib64, ...: symbolic links into /usr on merged-/usr systems, real folders elsewhere."""
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/", name)
        if path.is_symlink():
            yield from ("--symlink", os.readlink(path), str(path))
        elif path.is_dir():
            yield from ("--ro-bind", str(path), str(path))


def bwrap_command(
    setup: Setup, files: Sequence[tuple[int, str]], memory: int, argv: Sequence[str]
) -> list[str]:
    """The bubblewrap command line running `argv` (as PID 1) in a fresh sandbox; `files` are (fd, path inside)
    pairs copied into read-only files from descriptors the caller passes on."""
    size = str(memory)
    cmd = [setup.bwrap, "--unshare-all", "--unshare-user", "--disable-userns"]
    if setup.network == "none":
        cmd.append("--share-net")
    cmd += ["--die-with-parent", "--new-session", "--as-pid-1", "--hostname", "sandbox"]
    cmd += ["--ro-bind", "/usr", "/usr", *_root_links()]
    for folder in setup.binds:
        cmd += ["--ro-bind", folder, folder]
    for name in ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "alternatives"):
        cmd += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    cmd += ["--proc", "/proc", "--dev", "/dev"]
    for tmp in ("/tmp", "/dev/shm", SANDBOX):
        cmd += ["--size", size, "--perms", "0700", "--tmpfs", tmp]
    cmd += ["--perms", "0700", "--dir", f"{SANDBOX}/work", "--perms", "0700", "--dir", f"{SANDBOX}/work/out"]
    for fd, dest in files:
        cmd += ["--perms", "0444", "--ro-bind-data", str(fd), dest]
    cmd += ["--remount-ro", "/", "--chdir", f"{SANDBOX}/work", "--", *argv]
    return cmd


def fresh_uid() -> int:
    """A uid from the reserved range that no process uses now."""
    in_use: set[int] = set()
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    in_use.add(entry.stat().st_uid)
    while True:
        uid = UID_BASE + random.randrange(UID_SPAN)
        if uid not in in_use:
            return uid


def preexec(
    cgroup: Cgroup | None, uid: int | None, limits: Callable[[], None] | None = None
) -> Callable[[], None]:
    """What the child does between fork and exec of bubblewrap: join the call's cgroup (as parley's user,
    before anything can fork), die with parley, set per-process limits, and take the call's own uid."""
    parent = os.getpid()

    def setup() -> None:
        if cgroup is not None:
            cgroup.join()
        os.setsid()
        if limits is not None:
            limits()
        if uid is not None:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        # After the uid change, which clears it: bubblewrap then dies with parley even before it sets its own.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return setup


# --- finding out what this machine allows ----------------------------------------------------------------


def _candidates() -> list[tuple[str, tuple[str, ...]]]:
    """Interpreters to try, each with the folders to bind for it: parley's own base interpreter first (its
    install, never the virtualenv), then the system's."""
    found: list[tuple[str, tuple[str, ...]]] = []
    base = os.path.realpath(_base_interpreter())
    prefix = os.path.realpath(sys.base_prefix)
    if base and prefix.startswith("/usr/"):
        found.append((base, ()))
    elif base and base.startswith(prefix + "/") and _bindable(prefix):
        found.append((base, (prefix,)))
    for name in ("python3", "python3.11", "python3.12", "python3.13"):
        path = shutil.which(name, path="/usr/bin:/usr/local/bin")
        if path:
            real = os.path.realpath(path)
            if real.startswith("/usr/") and all(real != p for p, _ in found):
                found.append((real, ()))
    return found


def _base_interpreter() -> str:
    """The interpreter a virtualenv was made from (its install's own, from sys.base_prefix), else this one."""
    if sys.prefix == sys.base_prefix:
        return sys.executable
    name = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for folder in (sysconfig.get_config_var("BINDIR"), os.path.join(sys.base_prefix, "bin")):
        if folder and os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return sys.executable


def _bindable(prefix: str) -> bool:
    """A Python install outside /usr is bound only if it holds none of parley's data or a whole home."""
    from parley.paths import data_dir

    path = Path(prefix)
    data = data_dir().resolve()
    home = Path.home().resolve()
    return (
        path != Path("/") and path != home and not data.is_relative_to(path) and not home.is_relative_to(path)
    )


def _try(setup: Setup) -> str:
    """Run a trivial program in a sandbox made as for a real call; "" if it worked, else what went wrong."""
    try:
        cgroup = new_cgroup(setup, 256 << 20, 16) if setup.cgroup else None
    except OSError as exc:
        return f"cannot make a cgroup: {exc}"
    try:
        code = "import os, socket; os.listdir('/sandbox/work'); socket.socket().close(); print(os.getpid())"
        cmd = bwrap_command(setup, (), 256 << 20, [setup.python, "-I", "-S", "-B", "-c", code])
        uid = fresh_uid() if setup.fresh_uid else None
        done = subprocess.run(
            cmd,
            preexec_fn=preexec(cgroup, uid),
            env={"PATH": PATH, "LANG": "C.UTF-8"},
            cwd="/",
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        if cgroup is not None:
            cgroup.remove()
    if done.returncode != 0 or done.stdout.strip() != b"1":
        err = done.stderr.decode(errors="replace").strip().splitlines()
        return err[-1] if err else f"exit code {done.returncode}"
    return ""


_HOW_BWRAP = (
    "install bubblewrap: apt-get install bubblewrap (Debian, Ubuntu), dnf install bubblewrap (Fedora)"
)
_HOW_USERNS = (
    "enable unprivileged user namespaces: sysctl -w kernel.unprivileged_userns_clone=1 (Debian), "
    "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu), user.max_user_namespaces > 0"
)
_HOW_CGROUP = (
    "run parley as root, or start it in a delegated cgroup v2 with the memory and pids controllers "
    "(systemd-run --user -p Delegate=yes --scope ...; PARLEY_SANDBOX_CGROUP names such a cgroup)"
)


def _find() -> Setup | Missing:
    bwrap = bwrap_path()
    if bwrap is None:
        return Missing((("bubblewrap (bwrap) not found", _HOW_BWRAP),))
    missing: list[tuple[str, str]] = []
    v2, why2 = v2_base()
    v1, why1 = v1_bases() if v2 is None else (None, "")
    if v2 is not None:
        kind, bases = "v2", (str(v2),)
    elif v1 is not None:
        kind, bases = "v1", (str(v1["memory"]), str(v1["pids"]))
    else:
        kind, bases = "", ()
        missing.append((f"no cgroup for total memory and process caps ({why2}; {why1})", _HOW_CGROUP))
    candidates = _candidates()
    if not candidates:
        return Missing(
            (*missing, ("no Python interpreter under /usr", "install python3: apt-get install python3"))
        )
    fresh = os.geteuid() == 0
    errors: list[str] = []
    # Code sharing parley's network is a loopback peer of the web chat and of every service on this machine:
    # only an operator's explicit choice allows it.
    networks = ("netns", "none") if os.environ.get(SHARE_NETWORK) == "1" else ("netns",)
    for network in networks:
        for python, binds in candidates:
            setup = Setup(
                python=python,
                binds=binds,
                network=network,
                cgroup=kind,
                fresh_uid=fresh,
                bwrap=bwrap,
                cgroup_bases=bases,
            )
            remove_stale(setup)
            error = _try(setup)
            if not error:
                return Missing(tuple(missing), partial=setup) if missing else setup
            errors.append(f"{python}: {error}")
    detail = "; ".join(dict.fromkeys(errors))
    missing.append(
        (
            f"bubblewrap cannot make its sandbox here ({detail})",
            f"{_HOW_USERNS} (if only the network namespace is refused, {SHARE_NETWORK}=1 runs code with "
            "this machine's network: it can then reach every service here, the web chat included)",
        )
    )
    return Missing(tuple(missing))


def probe() -> Setup | Missing:
    """How to confine code on this machine, found once (a real sandbox is started to check)."""
    global _cache
    with _lock:
        if _cache is None:
            _cache = _find()
        return _cache


_CONFINES = "run_python confines code (otherwise it refuses to run it)"
_NAMESPACES = (
    (
        "process tree dies with the call",
        "PID namespace (bubblewrap --unshare-pid --as-pid-1 --die-with-parent)",
    ),
    (
        "no access to parley's data, home folders, the virtualenv or other runs; private /tmp",
        "mount namespace: only /usr, the interpreter and the call's own tmpfs are mounted",
    ),
    ("cannot see or signal parley or other runs", "PID and user namespaces"),
)


def _fixes(missing: Sequence[tuple[str, str]], *, cgroup: bool | None = None) -> str:
    """How to get what is missing: all of it, only the cgroup's part, or all but the cgroup's part."""
    return "; ".join(
        f"{what}: {fix}" for what, fix in missing if cgroup is None or (fix == _HOW_CGROUP) == cgroup
    )


def _identity(setup: Setup | None, ns_how: str) -> tuple[str, bool, str]:
    name = "own identity per call"
    if setup is None:
        return name, False, ns_how
    if setup.fresh_uid:
        return name, True, "a fresh uid per call (parley runs as root)"
    return name, True, "parley's user inside a user namespace without capabilities (parley is not root)"


def _caps(setup: Setup | None, missing: Sequence[tuple[str, str]], ns_how: str) -> tuple[str, bool, str]:
    name = "total memory and process caps per call"
    if setup is None or not setup.cgroup:
        return name, False, _fixes(missing, cgroup=True) or ns_how
    files = "memory.max, memory.swap.max" if setup.cgroup == "v2" else "memory.limit_in_bytes, memory.memsw"
    return (
        name,
        True,
        f"a cgroup {setup.cgroup} per call under {', '.join(setup.cgroup_bases)}: {files}, pids.max",
    )


def _network(setup: Setup | None, ns_how: str) -> tuple[str, bool, str]:
    name = "no network"
    if setup is None:
        return name, False, ns_how
    if setup.network == "netns":
        return name, True, "network namespace with loopback only"
    return name, False, "the kernel refused a network namespace: code can reach the network"


def guarantees() -> list[tuple[str, bool, str]]:
    """Each guarantee run_python gives, whether it holds on this machine, and what it rests on or how to get it."""
    found = probe()
    setup = found if isinstance(found, Setup) else found.partial
    missing = found.items if isinstance(found, Missing) else ()
    ns_how = _fixes(missing, cgroup=False)
    if setup is not None and not missing:
        rows = [(_CONFINES, True, f"{setup.bwrap}, {setup.python}, user namespaces, cgroup {setup.cgroup}")]
    else:
        rows = [(_CONFINES, False, f"it refuses to run code here: {_fixes(missing)}")]
    rows += [
        (name, setup is not None, detail if setup is not None else ns_how) for name, detail in _NAMESPACES
    ]
    return [*rows, _identity(setup, ns_how), _caps(setup, missing, ns_how), _network(setup, ns_how)]
