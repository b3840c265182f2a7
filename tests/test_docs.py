"""The README and docs/: every relative link and picture points at a file that exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT

PAGES = [
    ROOT / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
    *sorted((ROOT / "notebook").glob("*.md")),
]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def relative_links(page: Path) -> list[str]:
    """The targets of the page's Markdown links and pictures that are files of the
    repository (not web addresses, not anchors on the same page)."""
    targets = LINK.findall(page.read_text())
    return [t for t in targets if not re.match(r"[a-z]+:|#", t)]


def test_the_pattern_finds_links_and_pictures():
    page = 'see [the data](data/README.md#use), ![x](docs/a.png "title") and [web](https://x.org)'
    assert LINK.findall(page) == ["data/README.md#use", "docs/a.png", "https://x.org"]


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path):
    missing = [
        target
        for target in relative_links(page)
        if not (page.parent / target.split("#")[0]).exists()
    ]
    assert not missing, f"{page.relative_to(ROOT)} links to missing files: {missing}"
