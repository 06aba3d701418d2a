"""Debian's Chromium for every browser test, and warm browser contexts handed from test to test.

A plugin of the root conftest (`pytest_plugins`), so that each test process launches Chromium once: fixtures of a
session imported into several conftests would be set up once per conftest.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ui.conftest import CHROMIUM, CHROMIUM_ARGS, STILL, UI_TIMEOUT_MS, Server, browser_missing

try:
    from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright
except ImportError:  # the browser tests skip themselves; see browser_missing()
    sync_playwright = None  # type: ignore[assignment]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Remember each phase's report on the item (for `new_page`); on failure, attach the servers' logs."""
    report: pytest.TestReport = yield
    setattr(item, f"rep_{report.when}", report)
    if report.failed:
        for server in Server.running:
            report.sections.append((f"parley ui on {server.url} (last lines)", server.log_tail()))
    return report


@pytest.fixture(scope="session")
def ui_browser() -> Iterator[Browser]:
    """Debian's Chromium, one per test process (named so as not to clash with pytest-playwright's `browser`)."""
    why = browser_missing()
    if why:
        pytest.skip(why)
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        pw.stop()


class WarmContexts:
    """Browser contexts kept between the tests of one process, each handed on as a new user would come.

    Chromium spends about 3 s of CPU opening the web chat in a new context and about half that in a new
    tab of a context whose last page is still open (its renderer and compiled scripts are reused): on a
    busy machine that is most of a browser test. A context is handed on only after a passing test, with
    its cookies, permissions and every site's storage cleared and its pages closed but one, left at
    about:blank until the next test's page is open. A context the test closed, or one that saw a
    failure, is closed instead."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.idle: list[BrowserContext] = []
        self.closed: set[int] = set()

    def page(self) -> Page:
        """A new tab with no cookies and no stored data, in a warm context if one is free."""
        if not self.idle:
            context = self.browser.new_context(
                viewport={"width": 1280, "height": 900}, reduced_motion="reduce"
            )
            context.set_default_timeout(UI_TIMEOUT_MS)
            context.add_init_script(STILL)
            context.on("close", lambda c: self.closed.add(id(c)))
            return context.new_page()
        context = self.idle.pop()
        keepers = list(context.pages)
        page = context.new_page()
        for keeper in keepers:
            keeper.close()
        return page

    def hand_back(self, context: BrowserContext, *, reuse: bool) -> None:
        if id(context) in self.closed:
            return
        if not reuse or not self._clear(context):
            with contextlib.suppress(Exception):
                context.close()
            return
        self.idle.append(context)

    @staticmethod
    def _clear(context: BrowserContext) -> bool:
        """Empty the context of everything a site can keep; False if that failed (the context is closed)."""
        try:
            pages = context.pages
            origins = {_origin(p.url) for p in pages} | Server.origins
            keeper = pages[0] if pages else context.new_page()
            keeper.goto("about:blank")
            for page in pages[1:]:
                page.close()
            cdp = context.new_cdp_session(keeper)
            for origin in origins - {""}:
                cdp.send("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
            cdp.detach()
            context.clear_cookies()
            context.clear_permissions()
        except Exception:
            return False
        return True


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}" if scheme in ("http", "https") else ""


@pytest.fixture(scope="session")
def warm_contexts(ui_browser: Browser) -> WarmContexts:
    return WarmContexts(ui_browser)


@pytest.fixture
def new_page(
    warm_contexts: WarmContexts, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], Page]]:
    """Open a page with cookies and storage of its own (a separate user); all closed after the test.
    A failing test leaves a screenshot of every page in its tmp_path."""
    contexts: list[BrowserContext] = []

    def make() -> Page:
        page = warm_contexts.page()
        contexts.append(page.context)
        return page

    yield make
    passed = all(
        getattr(request.node, f"rep_{when}", None) is None or getattr(request.node, f"rep_{when}").passed
        for when in ("setup", "call")
    )
    for i, context in enumerate(contexts):
        if not passed and id(context) not in warm_contexts.closed:
            for j, page in enumerate(context.pages):
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(tmp_path / f"failure-{i}-{j}.png"), full_page=True)
        warm_contexts.hand_back(context, reuse=passed)
