"""`parley ui` and `parley users`: start the web chat, manage its users."""

from __future__ import annotations

import asyncio
import getpass
import os
import secrets
import shutil
import sys
from pathlib import Path

from .errors import ConfigError
from .paths import data_dir, private_file, project_root, shipped_root


def auth_secret() -> str:
    """Chainlit signs its login cookies with this; kept in the data folder so logins survive restarts."""
    env = os.environ.get("CHAINLIT_AUTH_SECRET")
    if env:
        return env
    path = data_dir() / "auth_secret"
    try:  # made 0600 from the start, whatever the umask: never readable by others, not even for a moment
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        private_file(path)  # kept from before parley made it private
    else:
        os.fchmod(fd, 0o600)  # the umask may have taken more than group and others away
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secrets.token_urlsafe(48))
    return path.read_text(encoding="utf-8").strip()


async def _count_users() -> int:
    from .store import Store

    store = await Store.open()
    try:
        return await store.count_users()
    finally:
        await store.close()


_WEB_FILES = ("app.py", "chainlit.md", ".chainlit", "public")
"""What Chainlit reads from its working folder: the entry point, the readme page, its configuration, the assets."""


def web_root() -> Path:
    """The folder the web chat runs in. A checkout runs in place; an installed package copies its shipped web
    files into the data folder, because Chainlit writes next to them (uploads, avatars, team diagrams).
    `PARLEY_WEB_DIR` names another folder: Chainlit empties its `.files` (every open page's uploads) when its
    server stops, so servers started from one checkout need a folder each."""
    shipped = shipped_root()
    chosen = os.environ.get("PARLEY_WEB_DIR", "").strip()
    if chosen:
        web = Path(chosen).expanduser().resolve()
        if web == shipped.resolve():
            return shipped
    elif (shipped / "pyproject.toml").is_file():
        return shipped
    else:
        web = data_dir() / "web"
    try:
        web.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot make the web chat's folder {web} ({exc}): set PARLEY_WEB_DIR to a folder you can write"
        ) from exc
    for name in _WEB_FILES:
        source = shipped / name
        if source.is_dir():
            shutil.copytree(source, web / name, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copyfile(source, web / name)
    return web


def serve(host: str, port: int) -> int:
    """Replace this process with the Chainlit server for app.py."""
    # The address check alone: importing the app itself would set up the whole chat in this process, which
    # execve replaces with Chainlit's in a moment.
    from ._proc import loop_factory
    from .web.addresses import loopback as _loopback

    project = project_root()
    root = web_root()
    app = root / "app.py"
    if not app.is_file():
        raise ConfigError(
            f"{app} not found: this parley install is incomplete; reinstall it (pip install parley)"
        )
    loop_factory()  # a wrong PARLEY_EVENT_LOOP is said here, not in a traceback from the server's start
    users = asyncio.run(_count_users())
    if not _loopback(host) and users == 0:
        raise ConfigError(f"serving on {host} needs login: create a user first with `parley users add NAME`")
    # The server runs in the web chat's folder; the project it serves stays the one `parley ui` was started in.
    env = os.environ | {
        "PARLEY_UI_HOST": host,
        "CHAINLIT_AUTH_SECRET": auth_secret(),
        "PARLEY_HOME": str(project),
    }
    # Chainlit reads CI from the environment as its --ci flag, and its CI mode overwrites OPENAI_API_KEY with a
    # placeholder: under a CI runner (CI=true) every OpenAI call would fail with a key the user never set.
    env.pop("CI", None)
    shown = f"[{host}]" if ":" in host else host
    mode = "local mode, no login" if _loopback(host) and users == 0 else "login required"
    print(f"parley web chat on http://{shown}:{port} ({mode}); Ctrl-C stops it", flush=True)
    os.chdir(root)  # Chainlit reads .chainlit/ and public/ from the working directory
    args = [
        sys.executable,
        "-m",
        "chainlit",
        "run",
        str(app),
        "--headless",
        "--host",
        host,
        "--port",
        str(port),
    ]
    os.execve(sys.executable, args, env)
    return 0  # not reached


async def add_user(name: str, password: str) -> None:
    from .store import Store

    store = await Store.open()
    try:
        await store.create_user(name, password)
    finally:
        await store.close()


def read_password(from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ConfigError("the two passwords differ")
    return first
