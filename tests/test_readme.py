"""The README's Python examples run as written (on a fresh SQLite file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from reflexio_store import reset_session_factories

README = Path(__file__).resolve().parent.parent / "README.md"


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFLEXIO_DB_URL", f"sqlite:///{tmp_path / 'readme.db'}")
    blocks = [b for b in _python_blocks() if "get_session_factory()" in b or "Store()" in b]
    assert len(blocks) >= 2
    namespace: dict[str, object] = {}  # every name the examples use, they define
    try:
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)  # our own README
        hits = namespace["hits"]
        assert isinstance(hits, list) and hits, "the README's hybrid search found nothing"
        assert hits[0].item.content == "prefers dark mode"
    finally:
        reset_session_factories()
