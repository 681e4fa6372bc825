"""Citations of docs/ point at files and headings that exist; nothing cites files outside."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CITING = [ROOT / "README.md", *ROOT.joinpath("docs").glob("*.md")]
for folder in ("siamlab", "tests", "analysis", "benchmarks", "studies"):
    CITING += sorted(p for p in ROOT.joinpath(folder).rglob("*") if p.suffix in {".py", ".yaml"})
ANCHOR = re.compile(r"docs/([\w-]+\.md)#([\w-]+)")
HEADING = re.compile(r"docs/([\w-]+\.md), ([A-Z][\w -]*\w(?: \([\w -]+\))?)")


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _headings(doc: str) -> set[str]:
    text = (ROOT / "docs" / doc).read_text()
    return {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", text, re.M)}


def _citations() -> list[tuple[str, str, str]]:
    found = []
    for path in CITING:
        text = path.read_text()
        rel = str(path.relative_to(ROOT))
        found += [(rel, doc, "#" + a) for doc, a in ANCHOR.findall(text)]
        found += [(rel, doc, h) for doc, h in HEADING.findall(text)]
    return found


def test_the_anchor_rule_matches_github():
    assert _anchor("Optimiser recipe (ImageNet)") == "optimiser-recipe-imagenet"
    assert _anchor("Train-mode vs eval-mode BN") == "train-mode-vs-eval-mode-bn"


@pytest.mark.parametrize(("source", "doc", "target"), _citations())
def test_every_docs_citation_resolves(source, doc, target):
    assert (ROOT / "docs" / doc).is_file(), f"{source} cites docs/{doc}, which does not exist"
    headings = _headings(doc)
    if target.startswith("#"):
        assert target[1:] in {_anchor(h) for h in headings}, f"{source}: {doc}{target}"
    else:
        assert target in headings, f"{source}: {doc}, {target}"


def test_citations_were_found():
    cited = {doc for _, doc, _ in _citations()}
    assert cited == {"paper-recipes.md", "diagnostics.md"}


def test_nothing_cites_files_outside_the_repository():
    outside = re.compile(r"NOTES\.md|DIAGNOSTICS\.md|shared[/]paper|simsiam[-]paper")
    offenders = [str(p.relative_to(ROOT)) for p in CITING if outside.search(p.read_text())]
    assert offenders == [], f"cite docs/ instead: {offenders}"
