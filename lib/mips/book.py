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
        heading = f"## {STAGE_TITLES.get(stage, stage)}"
        if status["status"] == "failed":
            heading += f"\n\n```{{error}}\nThis stage failed: {status.get('error', '').splitlines()[0]}\n```"
        page.cells.append(nbformat.v4.new_markdown_cell(heading))
        for cell in nb.cells:
            tags = set(cell.get("metadata", {}).get("tags", []))
            if cell.cell_type == "markdown":
                cell.source = _demote(_demote(cell.source))
            if tags & _HIDE:
                cell.metadata["tags"] = sorted((tags - {"hide-input"}) | {"remove-cell"})
            page.cells.append(cell)
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
    return root / "_build" / "html" / "index.html"
