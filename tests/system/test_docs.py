"""/docs in a real browser: Swagger UI, served by nginx under the strict policy, shows every
function of the registry and calls it. A user's functions, not the demos."""

import re
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

from deploy.localstack import Stack
from helpers import ARTIFACTS, SERVED_APP, record_figure, usermodels, uwsgi_app
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
        expect(status_of(operation)).to_have_text(re.compile("200"), timeout=10_000)
        expect(answer_of(operation)).to_contain_text('"score": 1')
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


@pytest.fixture(scope="module")
def typed():
    """The stack serving functions of every type (tests/helpers/typed_models.py)."""
    with Stack(uwsgi_args=uwsgi_app("testapps:typed_app"), exempt=("127.0.0.1",)) as stack:
        yield stack


@contextmanager
def operation_of(browser, stack, operation_id: str):
    """The page, and one operation of /docs opened, ready to try; the browser's context closed
    after."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{stack.url}/docs")
        operation = page.locator(f"#operations-default-{operation_id}")
        operation.locator(".opblock-summary").click()
        yield page, operation
    finally:
        context.close()


def status_of(operation):
    """The status of the answer Swagger UI shows (the table's first row is its heading)."""
    return operation.locator(".live-responses-table td.response-col_status").nth(1)


def answer_of(operation):
    return operation.locator(".live-responses-table .response-col_description pre").first


def test_the_docs_show_a_stream_arriving_item_by_item(browser, typed):
    with operation_of(browser, typed, "get_count") as (page, operation):
        operation.locator("input[placeholder='n']").fill("6")
        operation.locator("input[placeholder='every']").fill("0.6")
        operation.locator("button.execute").click()
        panel = page.locator("#stream")
        # The first item shows while the function is still making the others (3 s in all)...
        expect(panel.locator("pre")).to_contain_text('{"result": 0}', timeout=2_500)
        expect(panel.locator(".state")).to_have_text("streaming…")
        assert '{"result": 5}' not in panel.locator("pre").inner_text()
        # ...and the last at its end, a line each, with Swagger UI's own view of the whole.
        expect(panel.locator(".state")).to_have_text("the stream ended", timeout=10_000)
        lines = panel.locator("pre").inner_text().strip().splitlines()
        assert [line.split("  ", 1)[1] for line in lines] == [
            f'{{"result": {i}}}' for i in range(6)
        ]
        seconds = [float(line.split(" ", 1)[0].strip("+")) for line in lines]
        assert seconds[-1] - seconds[0] > 2.0, seconds  # they came apart, not all at the end
        expect(status_of(operation)).to_have_text(re.compile("200"))
        expect(answer_of(operation)).to_contain_text('{"result": 5}')


def test_the_docs_offer_a_file_picker_for_a_file_parameter(browser, typed):
    with operation_of(browser, typed, "post_describe") as (_, operation):
        picker = operation.locator("input[type=file]")
        expect(picker).to_be_visible(timeout=10_000)
        picker.set_input_files({"name": "a.csv", "mimeType": "text/csv", "buffer": b"x,y\n1,2\n"})
        operation.locator("button.execute").click()
        expect(status_of(operation)).to_have_text(re.compile("200"), timeout=10_000)
        expect(answer_of(operation)).to_contain_text('"filename": "a.csv"')
        expect(answer_of(operation)).to_contain_text('"bytes": 8')
