"""A real headless Chromium, driven by Playwright, for the console's tests.

tests/conftest.py loads it as a plugin: a test asks for `page`. The browser is
the machine's own (Debian's `chromium` package, /usr/bin/chromium): Playwright's browser downloads are not used.
A machine without it fails the test, saying how to install it (`.ci/run` installs it on CI).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
INSTALL = "install Debian's Chromium first: apt-get install -y chromium (.ci/run does it on CI)"


def chromium_path() -> str:
    found = os.environ.get("HUB_TEST_CHROMIUM") or shutil.which("chromium") or CHROMIUM
    if not os.path.exists(found):
        pytest.fail(f"the console tests need a Chromium browser and none is installed: {INSTALL}")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the console tests need Playwright: pip install -e '.[test]'")
    path = chromium_path()
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, headless=True)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))
    yield opened
    context.close()
    assert not errors, f"the console raised in the browser: {errors}"
