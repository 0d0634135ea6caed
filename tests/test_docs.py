"""Every citation of the project's reference and of the golden vectors' README points at a section.

The rule, kept simple:
- No text file of the repository may name the old out-of-tree reference (MIST_ + REFERENCE).
- docs/REFERENCE.md has numbered headings `## N. Title` and `### N.M Title`, each number once.
- A citation is a `§N` or `§N.M` (a range `§1.2-1.5` cites both ends). It cites docs/REFERENCE.md
  when it
  stands in a line that mentions `REFERENCE.md`, or in a Python docstring that does, or anywhere in
  docs/REFERENCE.md itself. Such a citation must be a heading of docs/REFERENCE.md.
- A `§` written right after another document's name (`tests/golden/README.md §2.7`, `issue 3 §7`)
  cites that document, not docs/REFERENCE.md.
- tests/golden/README.md has numbered headings the same way. A `§N`, `§N.M` or range written right
  after `tests/golden/README.md`, or anywhere in tests/golden/README.md itself, cites it and must
  be one of its headings.
- No text file may cite the vectors' README kept outside the repository (its old name `golden` +
  ` README`, or a path into `..` + `/shared`).
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "REFERENCE.md"
GOLDEN_README = ROOT / "tests" / "golden" / "README.md"
OLD_NAME = "MIST_" + "REFERENCE"
OUT_OF_TREE = ("golden" + " README", ".." + "/shared")  # split so this file does not match itself
SUFFIXES = {".py", ".md", ".yaml", ".yml", ".txt", ".sh", ".toml", ".cfg", ".ini", ".cff", ".json"}
SKIP_DIRS = {"output", "features", "__pycache__"}

HEADING = re.compile(r"^#{2,3}\s+(\d+(?:\.\d+)?)\.?\s")
CITATION = re.compile(r"§\s?(\d+(?:\.\d+)?)(?:\s*[-–]\s*§?(\d+(?:\.\d+)?))?")
OTHER_DOCUMENT = re.compile(r"(README(\.md)?|issue\s+\d+)\s*$", re.IGNORECASE)
MENTIONS_REFERENCE = re.compile(r"REFERENCE\.md")
GOLDEN_CITATION = re.compile(r"tests/golden/README\.md\s+" + CITATION.pattern)


def _text_files():
    """Repository text files, without hidden folders (.git, caches) and run outputs."""
    for path in sorted(ROOT.rglob("*")):
        parts = path.relative_to(ROOT).parts
        if any(p.startswith(".") or p in SKIP_DIRS for p in parts[:-1]):
            continue
        if path.is_file() and path.suffix in SUFFIXES:
            yield path


def _headings(document=REFERENCE):
    """docs/REFERENCE.md (or another document) -> list of heading numbers, in order ('1', '1.1')."""
    lines = document.read_text(encoding="utf-8").splitlines()
    return [m.group(1) for m in map(HEADING.match, lines) if m]


def cited_sections(text):
    """'see §1.2-1.5 and issue 3 §7' -> ['1.2', '1.5']: the cited numbers, other documents
    skipped."""
    cited = []
    for m in CITATION.finditer(text):
        if OTHER_DOCUMENT.search(text[: m.start()]):
            continue
        cited += [n for n in m.groups() if n]
    return cited


def _docstrings(source):
    """Python source -> [(first line, docstring)] of the module, classes and functions."""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, kinds) and ast.get_docstring(node, clean=False):
            found.append((node.body[0].lineno, ast.get_docstring(node, clean=False)))
    return found


def _citations(path):
    """path -> [(line number, section)] of the citations of docs/REFERENCE.md it holds."""
    text = path.read_text(encoding="utf-8", errors="replace")
    units = list(enumerate(text.splitlines(), 1))
    if path.suffix == ".py":
        units += _docstrings(text)
    whole_file = path == REFERENCE
    return sorted(
        {
            (line, n)
            for line, unit in units
            if whole_file or MENTIONS_REFERENCE.search(unit)
            for n in cited_sections(unit)
        }
    )


def _golden_citations(path):
    """path -> [(line number, section)] of the citations of tests/golden/README.md it holds."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path == GOLDEN_README:
        found = [(m.start(), n) for m in CITATION.finditer(text) for n in m.groups() if n]
    else:
        found = [(m.start(), n) for m in GOLDEN_CITATION.finditer(text) for n in m.groups() if n]
    return sorted({(text.count("\n", 0, start) + 1, n) for start, n in found})


def test_cited_sections_parser():
    text = "docs/REFERENCE.md §3.1-3.4, tests/golden/README.md §2.6-2.8"
    assert cited_sections(text) == ["3.1", "3.4"]
    assert cited_sections("(§1.3-§1.7), §10. and issue 3 §7") == ["1.3", "1.7", "10"]


def test_reference_headings_are_numbered_once():
    numbers = _headings()
    assert len(numbers) > 40, "docs/REFERENCE.md lost its numbered headings"
    assert len(numbers) == len(set(numbers)), f"duplicate headings: {sorted(numbers)}"


def test_no_file_cites_the_old_reference():
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _text_files()
        for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if OLD_NAME in line
    ]
    assert not offenders, f"cite docs/REFERENCE.md instead of {OLD_NAME}.md: {offenders}"


def test_every_cited_section_exists():
    headings = set(_headings())
    cited = [(p, line, n) for p in _text_files() for line, n in _citations(p)]
    assert len(cited) > 50, "the citation scan found almost nothing: is the rule still matching?"
    missing = [f"{p.relative_to(ROOT)}:{line} §{n}" for p, line, n in cited if n not in headings]
    assert not missing, f"citations of sections docs/REFERENCE.md does not have: {missing}"


def test_golden_citation_parser():
    text = (
        "docs/REFERENCE.md §3.1, tests/golden/README.md §2.6-2.8 and\n    tests/golden/README.md §4"
    )
    found = [n for m in GOLDEN_CITATION.finditer(text) for n in m.groups() if n]
    assert found == ["2.6", "2.8", "4"]


def test_golden_readme_headings_are_numbered_once():
    numbers = _headings(GOLDEN_README)
    assert {"0", "1", "2.1", "2.9", "3", "4.1", "4.7"} <= set(numbers), numbers
    assert len(numbers) == len(set(numbers)), f"duplicate headings: {sorted(numbers)}"


def test_no_file_cites_the_out_of_tree_golden_readme():
    offenders = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _text_files()
        for i, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
        if any(old.lower() in line.lower() for old in OUT_OF_TREE)
    ]
    assert not offenders, f"cite tests/golden/README.md instead: {offenders}"


def test_every_cited_golden_section_exists():
    headings = set(_headings(GOLDEN_README))
    cited = [(p, line, n) for p in _text_files() for line, n in _golden_citations(p)]
    assert len(cited) > 10, "the golden citation scan found almost nothing: is the rule matching?"
    missing = [f"{p.relative_to(ROOT)}:{line} §{n}" for p, line, n in cited if n not in headings]
    assert not missing, f"citations of sections tests/golden/README.md does not have: {missing}"
