"""The README and docs/: every link to a heading (`page.md#heading`, `#heading`)
names a heading that the page has, as GitHub makes heading anchors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT
from test_docs import LINK, PAGES


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but hyphens dropped,
    each space a hyphen (Markdown code ticks and link syntax go too)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a Markdown page's headings (those outside code blocks)."""
    found, seen, fenced = set(), {}, False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        match = None if fenced else re.match(r"#{1,6}\s+(.*)", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def test_slug_follows_github():
    assert slug("The model shipped until 2026-12 (30 epochs, 65.9 %)") == (
        "the-model-shipped-until-2026-12-30-epochs-659-"
    )
    assert slug("After a crash: `--resume`") == "after-a-crash---resume"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_heading_link_resolves(page: Path):
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target) or "#" not in target:
            continue
        path, anchor = target.split("#", 1)
        linked = (page.parent / path) if path else page
        if linked.suffix == ".md" and linked.exists() and anchor not in anchors(linked):
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)} links to missing headings: {broken}"
