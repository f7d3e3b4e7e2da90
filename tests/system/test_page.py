"""The page at / in a real browser (Debian's chromium, driven by Playwright) on the real stack."""

import pytest
from playwright.sync_api import expect

from helpers import ARTIFACTS, record_figure


@pytest.fixture
def page(browser, registry_stack):
    context = browser.new_context(viewport={"width": 900, "height": 900})
    page = context.new_page()
    page.goto(f"{registry_stack.url}/")
    yield page
    context.close()


def draw(page, strokes: list[list[tuple[int, int]]]) -> None:
    """Draw on the canvas with the mouse, each stroke a pressed drag through its points."""
    box = page.locator("#canvas").bounding_box()
    for stroke in strokes:
        page.mouse.move(box["x"] + stroke[0][0], box["y"] + stroke[0][1])
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x, box["y"] + y, steps=8)
        page.mouse.up()


def test_pi_sqrt_of_25(page):
    page.fill("#a", "25")
    page.click("#compute")
    expect(page.locator("#result")).to_have_text("8.86226925452758")
    expect(page.locator("#pisqrt-error")).to_have_text("")


def test_api_error_is_shown_in_words(page):
    page.fill("#a", "abc")
    page.click("#compute")
    expect(page.locator("#pisqrt-error")).to_contain_text("'a' must be a number, got 'abc'")
    expect(page.locator("#result")).to_have_text("")


def test_drawn_digit_gets_a_label_and_ten_bars(page):
    draw(page, [[(90, 60), (200, 60), (130, 230)]])  # a 7: the bar, then the stem
    page.click("#predict")
    expect(page.locator("#bars li")).to_have_count(10)
    expect(page.locator("#label")).to_have_text("7")
    expect(page.locator("#digit-error")).to_have_text("")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "page.png", full_page=True)
    record_figure("screenshot of the page", ARTIFACTS / "page.png")


def test_bad_file_is_explained(page):
    page.set_input_files(
        "#file",
        files=[{"name": "notes.png", "mimeType": "image/png", "buffer": b"these are not pixels"}],
    )
    expect(page.locator("#digit-error")).to_contain_text("not a PNG or JPEG image")
    expect(page.locator("#label")).to_have_text("")
