"""Debian's Chromium for every browser test, and a new browser context for each page a test opens.

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


class _Chromium:
    """This process's Chromium, from the first browser test until the next test that is not one."""

    def __init__(self) -> None:
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None

    def browser(self) -> Browser:
        if self._browser is None:
            playwright = sync_playwright().start()
            try:
                self._browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            except Exception:
                playwright.stop()
                raise
            self._playwright = playwright
        return self._browser

    def close(self) -> None:
        browser, playwright = self._browser, self._playwright
        self._browser = self._playwright = None
        with contextlib.suppress(Exception):
            if browser is not None:
                browser.close()
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
    return _CHROMIUM.browser()


@pytest.fixture
def new_page(
    ui_browser: Browser, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], Page]]:
    """Open a page with cookies and storage of its own (a separate user); all closed after the test.
    A failing test leaves a screenshot of every page in its tmp_path."""
    contexts: list[BrowserContext] = []

    def make() -> Page:
        context = ui_browser.new_context(viewport={"width": 1280, "height": 900}, reduced_motion="reduce")
        context.set_default_timeout(UI_TIMEOUT_MS)
        context.add_init_script(STILL)
        contexts.append(context)
        return context.new_page()

    yield make
    reports = [getattr(request.node, f"rep_{when}", None) for when in ("setup", "call")]
    failed = any(r is not None and r.failed for r in reports)
    for i, context in enumerate(contexts):
        if context not in ui_browser.contexts:  # the test closed it (the browser is gone)
            continue
        if failed:
            for j, page in enumerate(context.pages):
                with contextlib.suppress(Exception):
                    page.screenshot(path=str(tmp_path / f"failure-{i}-{j}.png"), full_page=True)
        with contextlib.suppress(Exception):
            context.close()
