"""The project's pages as the tests read them, README.md and docs/*.md, and the code blocks in
them that tests run as written, found by their marker wherever the pages keep them."""

import re
from pathlib import Path

from deploy.localstack import PROJECT


def doc_pages() -> list[Path]:
    """README.md, then every page of docs/."""
    return [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]


def doc_block(name: str, kind: str = "example") -> str:
    """The code block after <!-- KIND: NAME --> in README.md or a docs/ page, unindented (a block
    inside a numbered step is indented). One page holds it: a block moved keeps being run, and
    one copied would leave a twin that no test runs."""
    marker = rf"<!-- {re.escape(kind)}: {re.escape(name)} -->\s*```\w*\n(.*?)```"
    found = [
        (page, match.group(1))
        for page in doc_pages()
        for match in re.finditer(marker, page.read_text(), re.S)
    ]
    where = [str(page.relative_to(PROJECT)) for page, _ in found]
    assert len(found) == 1, f"<!-- {kind}: {name} --> marks {len(found)} blocks, want 1: {where}"
    lines = found[0][1].rstrip().splitlines()  # less the closing fence's indentation
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    return "\n".join(line[indent:] for line in lines) + "\n"
