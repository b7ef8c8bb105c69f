"""The documents: a short README, links and cited paths that exist, nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.helpers import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]
README_MAX_LINES = 260
CITED_ROOTS = ("pipeline/", "deploy/", "tests/", "schemas/", "docs/", "benchmarks/")
"""A backticked path starting with one of these is a path in the repository, and must exist."""
TOP_LEVEL_FILES = {"Makefile", "README.md", "pyproject.toml", "docker-compose.yml"}
RUNTIME_OUTPUTS = ("benchmarks/results/",)
"""Git-ignored directories the benchmarks write: cited, but absent from a fresh checkout."""
PLACEHOLDER = re.compile(r"[<>*…{}]|\.\.\.")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`([^`\n]+)`")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*$", re.MULTILINE)
ISSUE_REFERENCE = re.compile(r"\bissues?\s+#?\d+|(?<![\w&/#])#\d+\b", re.IGNORECASE)


def _name(doc: Path) -> str:
    return str(doc.relative_to(REPO))


def _prose(doc: Path) -> str:
    """The document without its fenced code blocks."""
    return FENCE.sub("", doc.read_text())


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    anchors: set[str] = set()
    for _level, text in HEADING.findall(_prose(doc)):
        slug, n = _slug(text), 1
        while slug in anchors:
            slug, n = f"{_slug(text)}-{n}", n + 1
        anchors.add(slug)
    return anchors


def _inside_repo(path: Path) -> bool:
    return path.resolve().is_relative_to(REPO.resolve())


def test_the_readme_is_a_front_door() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"


def test_every_document_is_reachable_from_the_readme() -> None:
    readme = (REPO / "README.md").read_text()
    linked = {(REPO / target.split("#", 1)[0]).resolve() for target in LINK.findall(readme)}
    missing = [_name(doc) for doc in DOCS[1:] if doc.resolve() not in linked]
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_relative_link_leads_to_a_file_and_heading_in_the_repository(doc: Path) -> None:
    broken = []
    for target in LINK.findall(_prose(doc)):
        if re.match(r"(https?|mailto):", target):
            continue
        path_part, _, anchor = target.partition("#")
        if path_part.startswith("/"):
            broken.append(f"{target}: an absolute path")
            continue
        destination = (doc.parent / path_part) if path_part else doc
        if not _inside_repo(destination):
            broken.append(f"{target}: outside the repository")
        elif not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{target}: no such heading in {_name(destination)}")
    assert broken == []


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_every_cited_repository_path_exists(doc: Path) -> None:
    missing = []
    for span in CODE_SPAN.findall(_prose(doc)):
        for word in span.split():
            token = word.rstrip(".,;:)").split("::", 1)[0]
            cited = token.startswith(CITED_ROOTS) or token in TOP_LEVEL_FILES
            if not cited or PLACEHOLDER.search(token) or token.startswith(RUNTIME_OUTPUTS):
                continue
            if not (REPO / token).exists():
                missing.append(token)
    assert missing == []


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_no_document_points_outside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    outside = "../" + "shared"  # spelled in two parts so that this file does not name it either
    assert outside not in text and "DESIGN.md" not in text
    assert not re.search(r"(?<![\w.~])/(work|home|tmp|Users)/", text), "an absolute path of a machine"


@pytest.mark.parametrize("doc", DOCS, ids=_name)
def test_no_document_cites_an_issue_number(doc: Path) -> None:
    """Documents describe the code as it is; issue and task numbers mean nothing to their readers."""
    assert ISSUE_REFERENCE.findall(doc.read_text()) == []


def test_no_code_or_test_cites_an_issue_number() -> None:
    cited = [
        f"{path.relative_to(REPO)}: {match}"
        for folder in ("pipeline", "tests", "benchmarks", "deploy", "docs")
        for path in sorted((REPO / folder).rglob("*.py"))
        for match in ISSUE_REFERENCE.findall(path.read_text())
    ]
    assert cited == []
