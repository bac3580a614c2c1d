"""The book: a batch's output builds with Jupyter Book 1 under -W, and the link checker finds real breaks."""

import shutil
import warnings
from pathlib import Path

import nbformat
import pytest

from mips.book import broken_links, build_book
from mips.runner import RunOptions, execute_results, run_batch
from mips.tasks import registry

ROOT = Path(__file__).resolve().parents[1]


def test_link_checker_reports_missing_pages_and_anchors(tmp_path):
    (tmp_path / "a.html").write_text('<a href="b.html#here">ok</a> <a href="b.html#gone">x</a> '
                                     '<a href="missing.html">y</a> <a href="https://example.org/z">ext</a>')
    (tmp_path / "b.html").write_text('<h1 id="here">B</h1>')
    bad = broken_links(tmp_path)
    assert sorted(bad) == ["a.html: b.html#gone (no such anchor)", "a.html: missing.html"]


@pytest.mark.slow
def test_batch_output_builds_into_a_book_without_warnings_or_broken_links(isolated):
    """Run the real dataset notebook for two tasks, the results page, and build a copy of the book."""
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, isolated / name)
    shutil.copytree(ROOT / "book", isolated / "book", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("generated", "_build"))
    tasks = registry().select("Sum_All,Parity_All")
    opts = RunOptions(preset="smoke")
    result = run_batch(tasks, ["dataset"], opts, workers=2, quiet=True)
    assert result.n_failed == 0, [s.error for s in result.statuses]
    assert execute_results(opts, tasks).status == "ok"
    index = build_book(isolated, strict=True)
    html = index.parent
    pages = {p.name for p in (html / "book" / "generated" / "tasks").glob("*.html")}
    assert pages == {"14_parity_all.html", "17_sum_all.html"}
    sum_all = (html / "book" / "generated" / "tasks" / "17_sum_all.html").read_text()
    assert "<table" in sum_all and "reference agrees" in sum_all, "markdown outputs render as tables"
    assert (html / "book" / "generated" / "results.html").exists()
    assert list((html / "_images").glob("*.png")), "figures are in the built book"


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_are_valid_nbformat_with_unique_cell_ids(path):
    """Every shipped notebook validates as it stands (no id added behind our back), each cell id unique."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # nbformat's MissingIDFieldWarning: a cell without an id
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        nbformat.validate(nb)
    ids = [c["id"] for c in nb.cells]
    assert len(ids) == len(set(ids)), f"duplicate cell ids in {path.name}"
