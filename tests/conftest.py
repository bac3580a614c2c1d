"""Shared fixtures: isolated run, cache and book folders so tests never touch the user's."""

import pytest


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Point runs/, the book output and the dataset cache at a temporary folder."""
    monkeypatch.setenv("MIPS_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MIPS_BOOK_OUT", str(tmp_path / "book" / "generated"))
    monkeypatch.setenv("MIPS_CACHE", str(tmp_path / "cache"))
    return tmp_path
