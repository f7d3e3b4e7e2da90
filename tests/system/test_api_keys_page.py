"""Optional API keys in the demos' page, in a real browser: it sends the key typed in its field
(the docs' offer to authorize: test_docs.py)."""

import pytest
from playwright.sync_api import expect

from helpers.keys import KEY, keyed_stack


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    with keyed_stack(tmp_path_factory.mktemp("keys") / "api-keys") as stack:
        yield stack


@pytest.fixture
def keyed_page(browser, keyed):
    """A browser page on the keyed stack, and its URL."""
    context = browser.new_context()
    try:
        yield context.new_page(), keyed.url
    finally:
        context.close()


def test_the_page_sends_the_key_typed_in_its_field(keyed_page):
    page, url = keyed_page
    page.goto(f"{url}/")
    page.fill("#a", "25")
    page.click("#compute")
    expect(page.locator("#pisqrt-error")).to_contain_text("needs a key")
    page.fill("#api-key", KEY)
    page.click("#compute")
    expect(page.locator("#result")).to_have_text("8.86226925452758")
    expect(page.locator("#pisqrt-error")).to_have_text("")
