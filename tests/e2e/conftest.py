"""Browser fixtures: headless Debian Chromium driving the real app served by uvicorn."""

import re
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.browser import ARTIFACTS_DIR, CHROMIUM, CHROMIUM_ARGS, E2E_DIR
from tests.support.clock import ClockFile
from tests.support.server import migrate, running_server
from tests.support.smtp import MailCatcher

_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Hooks in a sub-directory conftest still see every collected item; mark only ours.
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the item so fixtures can tell whether the test failed."""
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The real app on a fresh, migrated SQLite database; yields its base URL."""
    directory = tmp_path_factory.mktemp("live")
    database_url = f"sqlite:///{directory / 'e2e.db'}"
    migrate(database_url)
    with running_server(database_url, directory / "media") as base_url:
        yield base_url


@pytest.fixture
def timed_server(tmp_path: Path) -> Iterator[tuple[str, ClockFile]]:
    """The real app on a fresh database, reading the time from a file the test moves."""
    clock = ClockFile(tmp_path / "clock")
    database_url = f"sqlite:///{tmp_path / 'journey.db'}"
    migrate(database_url)
    with running_server(database_url, tmp_path / "media", CLOCK_FILE=str(clock.path)) as url:
        yield url, clock


@pytest.fixture
def page(browser: Browser, live_server: str, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_server)
    browser_page = context.new_page()
    try:
        yield browser_page
        report = request.node.stash.get(_reports, {}).get("call")
        if report is not None and report.failed:
            ARTIFACTS_DIR.mkdir(exist_ok=True)
            name = re.sub(r"[^\w.-]+", "_", request.node.name)
            browser_page.screenshot(path=ARTIFACTS_DIR / f"{name}.png", full_page=True)
    finally:
        context.close()


@pytest.fixture(scope="module")
def caught_mail() -> Iterator[MailCatcher]:
    """The SMTP server (aiosmtpd) that `mailing_server` sends its mail to."""
    catcher = MailCatcher().start()
    try:
        yield catcher
    finally:
        catcher.stop()


@pytest.fixture(scope="module")
def mailing_server(
    tmp_path_factory: pytest.TempPathFactory, caught_mail: MailCatcher
) -> Iterator[str]:
    """The real app with its mail going to `caught_mail`, looked for every 0.2 s."""
    directory = tmp_path_factory.mktemp("mailing")
    database_url = f"sqlite:///{directory / 'e2e.db'}"
    migrate(database_url)
    env = {**caught_mail.env, "MAIL_POLL_SECONDS": "0.2"}
    with running_server(database_url, directory / "media", **env) as base_url:
        yield base_url


@pytest.fixture
def mailing_page(browser: Browser, mailing_server: str) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, base_url=mailing_server)
    try:
        yield context.new_page()
    finally:
        context.close()
