"""The demo: its embedder, its workload, and `run_demo` end to end on a real SQLite file."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from reflexio_store import SessionFactory, StorageConfigSQLite, StorageSettings
from reflexio_store.demo.embedder import HashingEmbedder
from reflexio_store.demo.run import DEMO_USER, execute_demo, run_demo
from reflexio_store.demo.workload import (
    ANCHOR_TOPICS,
    ClusteredVectors,
    Workload,
    WorkloadSize,
)
from reflexio_store.store import Store

TINY = WorkloadSize.tiny()


def test_embedder_is_deterministic_across_processes() -> None:
    code = (
        "from reflexio_store.demo.embedder import HashingEmbedder;"
        "print(HashingEmbedder(64).embed('prefers dark mode').tobytes().hex())"
    )
    # A fresh interpreter has a different hash() salt: blake2b must not care.
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == HashingEmbedder(64).embed("prefers dark mode").tobytes().hex()


def test_embedder_vectors_are_unit_length_and_overlap_means_similarity() -> None:
    embedder = HashingEmbedder(512)
    query = embedder.embed("dark mode")
    assert query.dtype == np.float32 and query.shape == (512,)
    assert float(np.linalg.norm(query)) == pytest.approx(1.0, abs=1e-5)
    close = embedder.similarity(query, embedder.embed("Prefers dark mode in every editor"))
    far = embedder.similarity(query, embedder.embed("Timezone Europe/Berlin"))
    assert close > 0.4 > far
    # Empty text still gets a valid (non-zero) vector: the store refuses all-zero embeddings.
    assert float(np.linalg.norm(embedder.embed(""))) == pytest.approx(1.0)


def test_workload_is_seeded_and_anchors_are_unique() -> None:
    first = [p.row for p in Workload(TINY).profiles()]
    again = [p.row for p in Workload(TINY).profiles()]
    assert first == again
    assert len({row["profile_id"] for row in first}) == len(first)
    mine = [row["content"] for row in first if row["user_id"] == DEMO_USER]
    # Exactly one of the demo user's facts mentions dark mode: searches have one right answer.
    assert sum("dark mode" in content for content in mine) == 1
    assert len(mine) > len(ANCHOR_TOPICS)
    requests = list(Workload(TINY).requests())
    assert all(2 <= len(r["interactions"]) <= 6 for r in requests)
    assert {i["role"] for r in requests for i in r["interactions"]} == {"user", "assistant"}


def test_clustered_vectors_cluster_by_topic() -> None:
    vectors = ClusteredVectors(dimensions=128, topics=5)
    rows = vectors.vectors([0, 0, 1], [0, 1, 0])
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    assert float(rows[0] @ rows[1]) > 0.4 > abs(float(rows[0] @ rows[2]))


def test_run_demo_prints_results(tmp_path: Path) -> None:
    out = io.StringIO()
    console = Console(file=out, width=200, color_system=None)
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    assert run_demo(console, db_url=url, size=TINY) == 0
    text = out.getvalue()
    expected_lines = (
        "Ingest through the Store API",
        "Top results",
        "Workflow runs where",
        "Prefers dark mode in every editor and dashboard",
        "Demo finished",
    )
    for expected in expected_lines:
        assert expected in text, expected
    assert "(no hits)" not in text

    # The same database again: the demo refuses instead of failing on duplicate ids.
    again = io.StringIO()
    report = io.StringIO()
    assert run_demo(Console(file=report), db_url=url, size=TINY, errors=Console(file=again)) == 2
    assert "already holds the demo" in again.getvalue()
    assert "already holds the demo" not in report.getvalue()


def test_demo_searches_find_the_seeded_facts(tmp_path: Path) -> None:
    config = StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'demo.db'}")
    factory = SessionFactory.from_config(config, settings=StorageSettings())
    try:
        store = Store(factory)
        report = execute_demo(store, "test", TINY)
        by_name = {result.name: result for result in report.searches}

        dark = by_name["profiles: 'dark mode'"]
        assert dark.mode == "hybrid" and dark.filters == f"user_id={DEMO_USER}"
        assert dark.hits[0][:2] == (DEMO_USER, "Prefers dark mode in every editor and dashboard")

        assert by_name["profiles: 'works in Rust'"].hits[0][1] == "Works in Rust most days"
        assert "Europe/Berlin" in by_name["profiles: 'timezone Berlin'"].hits[0][1]
        meeting = by_name["user playbooks: 'meeting times'"].hits
        assert meeting and meeting[0][0] == DEMO_USER and "Europe/Berlin" in meeting[0][1]
        assert "timezone" in by_name["agent playbooks: 'confirm timezone'"].hits[0][1]
        assert all(result.hits for result in report.searches)

        assert report.runs, "the metadata filter matched no workflow run"
        for run in report.runs:
            assert run["status"] == "completed"
            assert "backfill" in run["metadata"]["tags"]
            assert run["metadata"]["triggered_by"] == "schedule"

        # Straight through the Store again, vector only: the embedder's vectors were stored.
        embedder = HashingEmbedder(factory.storage.embedding_dimensions)
        hits = store.search_profiles(
            embedding=embedder.embed("dark mode"), mode="vector", user_id=DEMO_USER
        )
        assert hits and "dark mode" in hits[0].item.content
    finally:
        factory.dispose()


def test_a_failed_demo_reports_on_stderr(tmp_path: Path) -> None:
    """stdout carries the demo's report only; a failure goes to stderr with exit status 2."""
    result = subprocess.run(
        [sys.executable, "-m", "reflexio_store.cli", "demo", "--url", "sqlite:////proc/no.db"],
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "Demo failed" in result.stderr and "folder exists" in result.stderr
    assert "Demo failed" not in result.stdout
