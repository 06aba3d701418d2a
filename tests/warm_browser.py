"""Debian's Chromium for every browser test, and warm browser contexts handed from test to test.

A plugin of the root conftest (`pytest_plugins`): one Chromium per test process whichever folder its tests are in
(fixtures imported into several conftests would be set up once per conftest). It is launched for the first browser
test and closed as soon as the next test does not drive it: while started, Playwright's sync API leaves its event
loop marked as running in the main thread, and `asyncio.run`, which pytest-asyncio runs every async test with,
refuses to start under it. `make test-browser` runs only browser tests, so each worker launches Chromium once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ui.web_servers import CHROMIUM, CHROMIUM_ARGS, STILL, UI_TIMEOUT_MS, Server, browser_missing

try:
    from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright
except ImportError:  # the browser tests skip themselves; see browser_missing()
    sync_playwright = None  # type: ignore[assignment]

DRIVES_CHROMIUM = "ui_browser"
"""The fixture every browser test uses (through `new_page` or directly)."""


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Remember each phase's report on the item (for `new_page`); on failure, attach the servers' logs."""
    report: pytest.TestReport = yield
    setattr(item, f"rep_{report.when}", report)
    if report.failed:
        for server in Server.running:
            report.sections.append((f"parley ui on {server.url} (last lines)", server.log_tail()))
    return report


class WarmContexts:
    """Browser contexts kept between the tests of one process, each handed on as a new user would come.

    Chromium spends about 3 s of CPU opening the web chat in a new context and about half that in a new
    tab of a context whose last page is still open (its renderer and compiled scripts are reused): on a
    busy machine that is most of a browser test. A context is handed on only after a passing test, with
    its cookies, permissions, HTTP cache and every site's storage cleared and its pages closed but one,
    left at about:blank until the next test's page is open. A context the test closed, or one that saw a
    failure or a skip, is closed instead."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.idle: list[BrowserContext] = []

    def page(self) -> Page:
        """A new tab with no cookies and no stored data, in a warm context if one is free."""
        if not self.idle:
            context = self.browser.new_context(
                viewport={"width": 1280, "height": 900}, reduced_motion="reduce"
            )
            context.set_default_timeout(UI_TIMEOUT_MS)
            context.add_init_script(STILL)
            return context.new_page()
        context = self.idle.pop()
        try:
            keepers = list(context.pages)
            page = context.new_page()
            for keeper in keepers:
                keeper.close()
        except Exception:
            with contextlib.suppress(Exception):
                context.close()
            raise
        return page

    def open(self, context: BrowserContext) -> bool:
        """Whether the context is still open (a test may close it: the browser is gone)."""
        return context in self.browser.contexts

    def hand_back(self, context: BrowserContext, *, reuse: bool) -> None:
        if not self.open(context):
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
            cdp.send("Network.clearBrowserCache")  # what a server of the last test sent stays its own
            cdp.detach()
            context.clear_cookies()
            context.clear_permissions()
        except Exception:
            return False
        return True

    def close(self) -> None:
        for context in self.idle:
            with contextlib.suppress(Exception):
                context.close()
        self.idle.clear()


def _origin(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}" if scheme in ("http", "https") else ""


class _Chromium:
    """This process's Chromium and its warm contexts, from the first browser test until the next test that is not
    one (or the end of the session)."""

    def __init__(self) -> None:
        self._playwright: Playwright | None = None
        self._contexts: WarmContexts | None = None

    def contexts(self) -> WarmContexts:
        if self._contexts is None:
            playwright = sync_playwright().start()
            try:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            except Exception:
                playwright.stop()
                raise
            self._playwright, self._contexts = playwright, WarmContexts(browser)
        return self._contexts

    def close(self) -> None:
        contexts, playwright = self._contexts, self._playwright
        self._contexts = self._playwright = None
        with contextlib.suppress(Exception):
            if contexts is not None:
                contexts.close()
                contexts.browser.close()
        with contextlib.suppress(Exception):
            if playwright is not None:
                playwright.stop()


_CHROMIUM = _Chromium()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Close Chromium after the last of a run of browser tests (see the module's docstring)."""
    try:
        return (yield)
    finally:
        if nextitem is None or DRIVES_CHROMIUM not in getattr(nextitem, "fixturenames", ()):
            _CHROMIUM.close()


@pytest.fixture
def ui_browser() -> Browser:
    """Debian's Chromium (named so as not to clash with pytest-playwright's `browser`)."""
    why = browser_missing()
    if why:
        pytest.skip(why)
    return _CHROMIUM.contexts().browser


@pytest.fixture
def warm_contexts(ui_browser: Browser) -> WarmContexts:
    return _CHROMIUM.contexts()


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
    reports = [getattr(request.node, f"rep_{when}", None) for when in ("setup", "call")]
    passed = all(r is None or r.passed for r in reports)
    failed = any(r is not None and r.failed for r in reports)
    for i, context in enumerate(contexts):
        if failed and warm_contexts.open(context):
            for j, page in enumerate(context.pages):
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(tmp_path / f"failure-{i}-{j}.png"), full_page=True)
        warm_contexts.hand_back(context, reuse=passed)
