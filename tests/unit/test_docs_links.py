"""The README and the docs/ pages: every relative link leads to a file that exists, and to a
heading that exists when it names one; every page of docs/ is reachable from the README."""

import re
from pathlib import Path

import pytest

from deploy.localstack import PROJECT
from helpers.docpages import doc_pages

# [text](target) and ![alt](target); the target up to a space (a title may follow) or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)[^)]*\)")
FENCED = re.compile(r"^ *```.*?^ *```", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")


def links(page: Path) -> list[str]:
    """The link targets of a page, less those inside code (an example, not a link)."""
    text = CODE_SPAN.sub("", FENCED.sub("", page.read_text()))
    return LINK.findall(text)


def anchors(page: Path) -> set[str]:
    """The ids GitHub gives a page's headings: lower case, punctuation dropped, spaces to '-'."""
    text = FENCED.sub("", page.read_text())
    headings = re.findall(r"^#+\s+(.*?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def relative_links() -> list[tuple[Path, str]]:
    return [
        (page, target)
        for page in doc_pages()
        for target in links(page)
        if not re.match(r"[a-z]+:", target)  # http:, https:, mailto: are not checked offline
    ]


def dead(page: Path, target: str) -> str | None:
    """What is wrong with a relative link of page, or None: no file there, or no such heading."""
    path, _, anchor = target.partition("#")
    linked = (page.parent / path).resolve() if path else page
    if not linked.exists():
        return f"{page.name}: {target} leads to no file"
    if anchor and linked.suffix == ".md" and anchor not in anchors(linked):
        return f"{page.name}: {target}: {linked.name} has no such heading"
    return None


@pytest.mark.parametrize(
    ("page", "target"),
    relative_links(),
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_a_relative_link_leads_somewhere(page, target):
    assert dead(page, target) is None


def test_every_docs_page_is_linked_from_the_readme():
    readme = PROJECT / "README.md"
    linked = {(readme.parent / target.partition("#")[0]).resolve() for target in links(readme)}
    pages = [page for page in doc_pages() if page != readme]
    assert pages, "no pages in docs/"
    assert [page.name for page in pages if page.resolve() not in linked] == []


def test_the_check_sees_a_dead_link_and_a_missing_heading(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# A title: `make check`\n\n[gone](other.md) `[code](nowhere.md)`\n")
    assert links(page) == ["other.md"]
    assert dead(page, "other.md") == "page.md: other.md leads to no file"
    (tmp_path / "other.md").write_text("# Other\n")
    assert dead(page, "other.md") is None
    assert dead(page, "other.md#other") is None
    assert dead(page, "other.md#gone") == "page.md: other.md#gone: other.md has no such heading"
    assert dead(page, "#a-title-make-check") is None
