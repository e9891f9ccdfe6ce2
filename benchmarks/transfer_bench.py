"""Throughput of `reflexio-store copy` and `import-reflexio` at 100k profiles (rows/s).

    .venv/bin/python benchmarks/transfer_bench.py [--profiles 100000] [--no-postgres]

Builds an SQLite store of N profiles with 512-d embeddings through Store.add_profiles, copies it to
a fresh SQLite file and to PostgreSQL (a primary started here, with every index, HNSW included),
and imports a Reflexio SQLite database of N profiles (Reflexio's published DDL, read from the
installed reflexio-ai package, filled with sqlite3) into a fresh SQLite store. Prints a table and
writes bench-results/transfer.json.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from reflexio_store import SessionFactory, StorageConfigPostgres, StorageConfigSQLite  # noqa: E402
from reflexio_store.settings import StorageSettings  # noqa: E402
from reflexio_store.store import Store  # noqa: E402
from reflexio_store.transfer.copy import copy_database  # noqa: E402
from reflexio_store.transfer.reflexio_import import import_reflexio  # noqa: E402

DIMS = 512
BATCH = 5_000


def _vectors(rng: np.random.Generator, n: int) -> np.ndarray[Any, Any]:
    matrix = rng.standard_normal((n, DIMS)).astype(np.float32)
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)  # type: ignore[no-any-return]


def _sqlite(path: Path) -> SessionFactory:
    return SessionFactory.from_config(
        StorageConfigSQLite(db_url=f"sqlite:///{path}"), settings=StorageSettings()
    )


def build_store(path: Path, n: int) -> SessionFactory:
    factory = _sqlite(path)
    store = Store(factory)
    rng = np.random.default_rng(7)
    for start in range(0, n, BATCH):
        count = min(BATCH, n - start)
        vectors = _vectors(rng, count)
        store.add_profiles(
            [
                {
                    "profile_id": f"p{start + i}",
                    "user_id": f"u{(start + i) % 50}",
                    "content": f"profile {start + i} prefers dark mode and short answers",
                    "embedding": vectors[i],
                }
                for i in range(count)
            ]
        )
    return factory


def build_reflexio(path: Path, n: int) -> None:
    """A Reflexio SQLite file in reflexio-ai's own layout (its _DDL, read from the package)."""
    import importlib.util

    spec = importlib.util.find_spec("reflexio")
    assert spec is not None and spec.submodule_search_locations
    base = Path(next(iter(spec.submodule_search_locations)))
    source = (base / "server/services/storage/sqlite_storage/_base.py").read_text()
    ddl = re.search(r'_DDL = """(.*?)"""', source, re.S)
    assert ddl is not None, "reflexio-ai's _DDL not found"
    rng = np.random.default_rng(11)
    with sqlite3.connect(path) as conn:
        conn.executescript(ddl.group(1))
        for start in range(0, n, BATCH):
            count = min(BATCH, n - start)
            vectors = _vectors(rng, count)
            conn.executemany(
                "INSERT INTO profiles (profile_id, user_id, content, last_modified_timestamp, "
                "generated_from_request_id, custom_features, embedding, source, status, "
                "extractor_names, created_at) VALUES (?, ?, ?, ?, '', '{}', ?, 'x', NULL, '[]', "
                "'2026-01-01T00:00:00.000Z')",
                [
                    (
                        f"p{start + i}",
                        f"u{(start + i) % 50}",
                        f"profile {start + i} prefers dark mode",
                        1_760_000_000 + start + i,
                        json.dumps(vectors[i].tolist()),
                    )
                    for i in range(count)
                ],
            )


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profiles", type=int, default=100_000)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", default="bench-results/transfer.json")
    args = parser.parse_args(argv)
    n = args.profiles
    work = Path(tempfile.mkdtemp(prefix="rxs-transfer-"))
    console = Console()
    results: list[dict[str, Any]] = []

    def record(what: str, rows: int, seconds: float) -> None:
        results.append(
            {"what": what, "rows": rows, "seconds": seconds, "rows_per_s": rows / seconds}
        )
        console.print(f"{what}: {rows / seconds:,.0f} rows/s")

    source = build_store(work / "source.db", n)
    target = _sqlite(work / "copy.db")
    target.ensure_schema()
    record("copy SQLite -> SQLite", n, timed(lambda: copy_database(source, target, batch=5000)))
    target.dispose()

    if not args.no_postgres:
        from tests.support.pg_cluster import start_cluster

        cluster = start_cluster(work / "pg")
        try:
            pg = SessionFactory.from_config(
                StorageConfigPostgres(db_url=cluster.primary_url),
                settings=StorageSettings(auto_migrate=True),
            )
            pg.ensure_schema()
            record(
                "copy SQLite -> PostgreSQL (HNSW + GIN)",
                n,
                timed(lambda: copy_database(source, pg, batch=5000)),
            )
            pg.dispose()
        finally:
            cluster.stop()
    source.dispose()

    build_reflexio(work / "reflexio.db", n)
    imported = _sqlite(work / "imported.db")
    imported.ensure_schema()
    record(
        "import-reflexio -> SQLite",
        n,
        timed(lambda: import_reflexio(work / "reflexio.db", imported)),
    )
    imported.dispose()

    table = Table(title=f"transfer throughput, {n:,} profiles x {DIMS}-d (verification included)")
    for name in ("what", "rows", "seconds", "rows/s"):
        table.add_column(name, justify="left" if name == "what" else "right")
    for r in results:
        table.add_row(r["what"], f"{r['rows']:,}", f"{r['seconds']:.1f}", f"{r['rows_per_s']:,.0f}")
    console.print(table)
    out = ROOT / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"profiles": n, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
