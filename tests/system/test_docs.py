"""/docs in a real browser: Swagger UI, served by nginx under the strict policy, shows every
function of the registry and calls it. A user's functions, not the demos."""

import re

import pytest
from playwright.sync_api import expect

from helpers import ARTIFACTS, SERVED_APP, record_figure, usermodels
from helpers.keys import keyed_stack


def test_docs_list_every_function_and_call_one(browser, user_stack):
    status, headers, _ = user_stack.request("GET", "/docs")
    assert status == 200
    assert "script-src" not in headers["content-security-policy"]  # default-src 'self' only
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    page = context.new_page()
    refused = []  # what the Content-Security-Policy blocked, any script error or failed load
    page.on("console", lambda m: refused.append(m.text) if "Content Security" in m.text else None)
    page.on("pageerror", lambda error: refused.append(str(error)))
    # (the browser's own guess at /favicon.ico, which the site does not have, aside)
    page.on(
        "response",
        lambda r: refused.append(r.url) if r.status >= 400 and "favicon" not in r.url else None,
    )
    try:
        page.goto(f"{user_stack.url}/docs")
        for name in usermodels.ENDPOINTS:
            expect(page.locator(f"[data-path='/{name}']").first).to_be_visible(timeout=15_000)
        operation = page.locator("#operations-default-get_sentiment")
        operation.locator(".opblock-summary").click()
        operation.locator("input[placeholder='text']").fill("good day")
        operation.locator("button.execute").click()
        answer = operation.locator(".live-responses-table .response-col_description pre").first
        expect(answer).to_contain_text('"score": 1', timeout=10_000)
        expect(
            operation.locator(".live-responses-table td.response-col_status").nth(1)
        ).to_have_text(re.compile("200"))
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "docs.png", full_page=False)
        record_figure("screenshot of /docs", ARTIFACTS / "docs.png")
    finally:
        context.close()
    assert refused == []


@pytest.fixture(scope="module")
def keyed(tmp_path_factory):
    """The stack with a key file, serving a user's functions."""
    with keyed_stack(tmp_path_factory.mktemp("keys") / "api-keys", SERVED_APP) as stack:
        yield stack


def test_the_docs_offer_to_authorize(browser, keyed):
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{keyed.url}/docs")
        expect(page.locator("button.authorize")).to_be_visible()
    finally:
        context.close()
