"""Shared fixtures: isolated run, cache and book folders so tests never touch the user's."""

import pytest
import torch


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Point runs/, the book output and the dataset cache at a temporary folder."""
    monkeypatch.setenv("MIPS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MIPS_BOOK_OUT", str(tmp_path / "book" / "generated"))
    monkeypatch.setenv("MIPS_CACHE", str(tmp_path / "cache"))
    return tmp_path


@pytest.fixture
def one_thread():
    """Tiny tensors on a shared 2-core machine: one intra-op thread beats several competing ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
