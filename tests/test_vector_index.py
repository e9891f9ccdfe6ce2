"""SQLite's in-process vector index stays coherent with the file, also when another process
writes: a change made elsewhere is seen by the next search, never served stale."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import insert, text

from reflexio_store import SessionFactory, StorageConfigSQLite, StorageSettings
from reflexio_store.models import Profile
from reflexio_store.search import vector_index
from reflexio_store.store import Store
from tests.test_search import profile_row

DIMS = 16


def _factory(path: Path) -> SessionFactory:
    return SessionFactory.from_config(
        StorageConfigSQLite(db_url=f"sqlite:///{path}"),
        settings=StorageSettings(embedding_dimensions=DIMS),
    )


def _unit(rng: np.random.Generator) -> Any:
    v = rng.normal(size=DIMS).astype(np.float32)
    return v / np.linalg.norm(v)


def _wait_ready(path: Path, store: Store, probe: Any, deadline: float = 60.0) -> None:
    end = time.monotonic() + deadline
    while not vector_index.is_ready(str(path), "profiles"):
        store.search_profiles(embedding=probe, mode="vector", threshold=-1.0)
        if time.monotonic() > end:
            pytest.fail("the vector index was not built within 60 s")
        time.sleep(0.05)


def _indexed_store(
    path: Path, rows: int, *, seed: int, users: int = 1
) -> tuple[SessionFactory, Store, np.random.Generator]:
    """`rows` profiles of random unit vectors in a new file, its vector index built and ready."""
    vector_index.forget_all()
    factory = _factory(path)
    rng = np.random.default_rng(seed)
    with factory.writer() as s:
        s.execute(
            insert(Profile),
            [profile_row(f"u{i % users}", f"row {i}", _unit(rng)) for i in range(rows)],
        )
    store = Store(factory)
    _wait_ready(path, store, _unit(rng))
    return factory, store, rng


@pytest.fixture
def indexed(tmp_path: Path) -> Any:
    if not vector_index._usearch_available():
        pytest.fail("usearch is a dependency of reflexio_store: pip install -e '.[test]'")
    path = tmp_path / "index.db"
    factory, store, _rng = _indexed_store(path, 300, seed=7, users=5)
    yield path, factory, store
    factory.dispose()
    vector_index.forget_all()


def _exact(factory: SessionFactory, query: Any, k: int = 10) -> list[str]:
    with factory.reader() as s:
        rows = s.execute(text("SELECT content, embedding FROM profiles WHERE status = 'current'"))
        scored = [(c, float(np.frombuffer(e, np.float32) @ query)) for c, e in rows if e]
    scored.sort(key=lambda p: (-p[1], p[0]))
    return [c for c, _ in scored[:k]]


def test_index_answers_like_the_exact_scan(indexed: Any) -> None:
    path, factory, store = indexed
    rng = np.random.default_rng(11)
    assert vector_index.memory_bytes(str(path), "profiles") > 0
    for _ in range(20):
        q = _unit(rng)
        got = [
            h.item.content
            for h in store.search_profiles(embedding=q, mode="vector", threshold=-1.0)
        ]
        assert got == _exact(factory, q)


def test_writes_from_another_process_are_seen(indexed: Any, tmp_path: Path) -> None:
    path, _factory_unused, store = indexed
    target = np.zeros(DIMS, dtype=np.float32)
    target[3] = 1.0
    # Another process inserts a row exactly at `target`, re-embeds "row 0" to `target` too and
    # deletes "row 1"; the index must show all three on the next search.
    script = textwrap.dedent(
        f"""
        import numpy as np
        from sqlalchemy import insert, update, delete
        from reflexio_store import SessionFactory, StorageConfigSQLite, StorageSettings
        from reflexio_store.models import Profile
        from tests.test_search import profile_row
        f = SessionFactory.from_config(
            StorageConfigSQLite(db_url="sqlite:///{path}"),
            settings=StorageSettings(embedding_dimensions={DIMS}),
        )
        v = np.zeros({DIMS}, dtype=np.float32); v[3] = 1.0
        with f.writer() as s:
            s.execute(insert(Profile), [profile_row("other", "from another process", v)])
            s.execute(update(Profile).where(Profile.content == "row 0").values(embedding=v))
            s.execute(delete(Profile).where(Profile.content == "row 1"))
        f.dispose()
        """
    )
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    hits = store.search_profiles(embedding=target, mode="vector", threshold=0.99)
    assert sorted(h.item.content for h in hits) == ["from another process", "row 0"]
    # The deleted row is gone from every answer, the index kept (caught up, not rebuilt).
    everything = store.search_profiles(embedding=target, mode="vector", threshold=-1.0, top_k=1000)
    assert "row 1" not in {h.item.content for h in everything}
    assert len(everything) == 300
    assert vector_index.is_ready(str(path), "profiles")


def test_cold_index_falls_back_to_the_exact_scan(tmp_path: Path) -> None:
    vector_index.forget_all()
    path = tmp_path / "cold.db"
    factory = _factory(path)
    rng = np.random.default_rng(3)
    with factory.writer() as s:
        s.execute(insert(Profile), [profile_row("u", f"row {i}", _unit(rng)) for i in range(50)])
    q = _unit(rng)
    # The very first search finds no index: it is answered by the exact scan (right answer).
    got = [
        h.item.content
        for h in Store(factory).search_profiles(embedding=q, mode="vector", threshold=-1.0)
    ]
    assert got == _exact(factory, q)
    factory.dispose()
    vector_index.forget_all()


def test_asking_for_every_row_returns_every_row_after_changes(tmp_path: Path) -> None:
    """HNSW walks miss nodes once rows were removed and re-added (a re-embedding); a request
    for the whole table must still see every row, since a short answer means 'no more rows'."""
    path = tmp_path / "changes.db"
    factory, store, rng = _indexed_store(path, 600, seed=5)
    # Delete a third and re-embed a third through the change log (caught up, not rebuilt).
    target = np.zeros(DIMS, dtype=np.float32)
    target[3] = 1.0
    with factory.writer() as s:
        s.execute(text("DELETE FROM profiles WHERE id % 3 = 0"))
        s.execute(
            text("UPDATE profiles SET embedding = :v WHERE id % 3 = 1"), {"v": target.tobytes()}
        )
    with factory.reader() as s:
        moved = s.execute(text("SELECT count(*) FROM profiles WHERE id % 3 = 1")).scalar_one()
    hits = store.search_profiles(embedding=target, mode="vector", threshold=-1.0, top_k=1000)
    assert len(hits) == 400
    assert sum(h.similarity >= 0.999 for h in hits) == moved
    for _ in range(10):
        q = _unit(rng)
        hits = store.search_profiles(embedding=q, mode="vector", threshold=-1.0, top_k=1000)
        assert len(hits) == 400
        assert [h.item.content for h in hits[:10]] == _exact(factory, q)
    assert vector_index.is_ready(str(path), "profiles")
    factory.dispose()
    vector_index.forget_all()


def test_a_graph_worn_by_removals_is_rebuilt_aside(tmp_path: Path) -> None:
    path = tmp_path / "worn.db"
    factory, store, rng = _indexed_store(path, 3000, seed=9)
    with factory.writer() as s:
        s.execute(text("DELETE FROM profiles WHERE id % 2 = 0"))
    q = _unit(rng)
    # The search that applies 1,500 removals still answers from the index, exactly re-ranked...
    first = [h.item.content for h in store.search_profiles(embedding=q, mode="vector")]
    assert first == _exact(factory, q)
    index = vector_index._indexes[(str(path.resolve()), "profiles")]
    # ...and starts a rebuild whose graph holds only the 1,500 live rows.
    _wait_ready(path, store, q)
    assert index.removed == 0
    assert len(index.graph) == 1500
    assert [h.item.content for h in store.search_profiles(embedding=q, mode="vector")] == first
    factory.dispose()
    vector_index.forget_all()


def test_a_process_exiting_during_a_rebuild_exits_cleanly(tmp_path: Path) -> None:
    """usearch builds on its own C++ threads: a process that exited while they ran aborted
    (status 134, "terminate called without an active exception"). The demo ends right after its
    searches started a rebuild, so it aborted every time before the fix (3 runs of 3)."""
    env = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
    env = {k: v for k, v in env.items() if not k.startswith("REFLEXIO_")}
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from reflexio_store.cli import main; sys.exit(main(['demo']))",
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "Demo finished" in done.stdout, done.stderr
    assert "terminate called" not in done.stderr
    assert done.returncode == 0, done.stderr
