"""Assemble the book from what the batch executed: one page per task grouping its stage notebooks.

A task page is the task's executed stage notebooks concatenated in stage order (headings demoted one level
under the task's title), so a reader sees the whole path from data to verified program on one page; a
failed stage shows its traceback and a skipped stage says why. The book is then built by Jupyter Book 1
without re-executing anything.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import nbformat

from mips.artifacts import STAGES, project_root
from mips.tasks import Task

log = logging.getLogger(__name__)

STAGE_TITLES = {
    "dataset": "Data", "search": "Architecture search", "simplify": "Simplification",
    "extract": "Discrete states", "regress": "Regression", "program": "Program and verification",
    "llm_baseline": "LLM baseline",
}
_HIDE = {"parameters", "injected-parameters"}


def task_page_path(task: Task, out: Path) -> Path:
    """``tasks/NN_<task_id>.ipynb``: the paper index first so the book lists tasks in paper order."""
    return out / "tasks" / f"{task.paper_index or 99:02d}_{task.id}.ipynb"


def _demote(source: str) -> str:
    return re.sub(r"^(#{1,5}) ", r"#\1 ", source, flags=re.M)


def write_task_page(task: Task, out: Path) -> Path | None:
    """Merge the task's executed stage notebooks into its book page; None if nothing ran yet."""
    import json

    parts = []
    for stage in STAGES:
        nb_path = out / task.id / f"{stage}.ipynb"
        status_file = out / task.id / f"{stage}.status.json"
        status = json.loads(status_file.read_text()) if status_file.exists() else None
        if status is None:
            continue
        parts.append((stage, nb_path if nb_path.exists() else None, status))
    if not parts:
        return None
    page = nbformat.v4.new_notebook()
    page.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    page.cells.append(nbformat.v4.new_markdown_cell(
        f"# {task.name}\n\n{task.description}\n\n"
        f"Inputs: {task.input_dim}-dimensional, alphabet {task.domain}, length {task.seq_len}. "
        f"Outputs: {task.output_dim}-dimensional. "
        + (f"\n\n*Kept from the original:* {task.quirk}" if task.quirk else "")))
    for stage, nb_path, status in parts:
        if status["status"] == "skipped" or nb_path is None:
            page.cells.append(nbformat.v4.new_markdown_cell(
                f"## {STAGE_TITLES.get(stage, stage)}\n\n```{{warning}}\nNot run: {status.get('error', '')}\n```"))
            continue
        nb = nbformat.read(nb_path, as_version=4)
        cells = list(nb.cells)
        first_md = next((c for c in cells if c.cell_type == "markdown"), None)
        titled = first_md is not None and first_md.source.startswith("# ")
        if not titled:
            page.cells.append(nbformat.v4.new_markdown_cell(f"## {STAGE_TITLES.get(stage, stage)}"))
        for cell in cells:
            tags = set(cell.get("metadata", {}).get("tags", []))
            if cell.cell_type == "markdown":
                cell.source = _demote(cell.source)
                if cell is first_md and titled and status["status"] == "failed":
                    cell.source += (f"\n\n```{{error}}\nThis stage failed: "
                                    f"{status.get('error', '').splitlines()[0]}\n```")
            elif tags & _HIDE:
                cell.metadata["tags"] = sorted(tags | {"remove-cell"})
            else:
                cell.metadata["tags"] = sorted(tags | {"hide-input"})
            page.cells.append(cell)
        if not titled and status["status"] == "failed":
            page.cells.insert(len(page.cells) - len(cells), nbformat.v4.new_markdown_cell(
                f"```{{error}}\nThis stage failed: {status.get('error', '').splitlines()[0]}\n```"))
    path = task_page_path(task, out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    nbformat.write(page, tmp)
    tmp.replace(path)
    return path


def build_book(root: Path | None = None, strict: bool = True) -> Path:
    """Build the HTML book with Jupyter Book 1 (no execution); returns the path of index.html."""
    root = root or project_root()
    cmd = [str(Path(sys.executable).with_name("jupyter-book")), "build", str(root)]
    if strict:
        cmd += ["-W", "-n", "--keep-going"]
    log.info("building the book: %s", " ".join(cmd))
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"jupyter-book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    html = root / "_build" / "html"
    if strict and (bad := broken_links(html)):
        raise RuntimeError("broken internal links in the built book:\n" + "\n".join(bad[:50]))
    return html / "index.html"


def broken_links(html_dir: Path) -> list[str]:
    """Internal links in the built HTML whose target file or anchor does not exist."""
    from html.parser import HTMLParser
    from urllib.parse import unquote, urlsplit

    class Collect(HTMLParser):
        def __init__(self):
            super().__init__()
            self.hrefs: list[str] = []
            self.ids: set[str] = set()

        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if a.get("id"):
                self.ids.add(a["id"])
            for key in ("href", "src"):
                if a.get(key) and tag in ("a", "img", "link", "script"):
                    self.hrefs.append(a[key])

    pages: dict[Path, Collect] = {}
    for page in Path(html_dir).rglob("*.html"):
        if "_static" in page.parts or "_sources" in page.parts:
            continue
        c = Collect()
        c.feed(page.read_text(errors="replace"))
        pages[page.resolve()] = c
    broken = []
    for page, c in pages.items():
        for href in c.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or href.startswith(("mailto:", "javascript:", "data:")):
                continue
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            if target.is_dir():
                target = target / "index.html"
            if not target.exists():
                broken.append(f"{page.relative_to(Path(html_dir).resolve())}: {href}")
            elif parts.fragment and target in pages and parts.fragment not in pages[target].ids:
                broken.append(f"{page.relative_to(Path(html_dir).resolve())}: {href} (no such anchor)")
    return broken
