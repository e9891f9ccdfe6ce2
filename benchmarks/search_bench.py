#!/usr/bin/env python
"""Search benchmark (issue 9 items 2 and 3; issue 7 item 4): unfiltered and user-filtered
vector / hybrid search at 100k profiles on SQLite (in-process vector index against the exact
scan) and on PostgreSQL through the replica (one statement per search), with recall@10 against
exact search, round trips per search and the index's memory.

    python benchmarks/search_bench.py                         # both databases, 100k profiles
    python benchmarks/search_bench.py --no-pg --size 20000    # SQLite only, smaller
    python benchmarks/search_bench.py --pg-url URL --pg-read-url URL --keep   # reuse a server

Called by benchmarks/bench.py with --search (its figures join bench.py's table). Data and
queries are bench.py's (clustered 512-d vectors over 50 users, topic phrases as query text).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import event, func, select  # noqa: E402

from benchmarks import bench  # noqa: E402
from reflexio_store import SessionFactory  # noqa: E402
from reflexio_store.models import Profile  # noqa: E402
from reflexio_store.search.fusion import reciprocal_rank_fusion  # noqa: E402
from reflexio_store.store import Store  # noqa: E402

Case = tuple[str, Callable[[int], Any]]


def _load(store: Store, data: bench.Dataset, size: int, batch: int) -> float:
    return bench._store_load(store, data, 0, size, batch)


def _exact_vector(data: bench.Dataset, size: int, q: bench.Query, user: str | None) -> list[str]:
    mask = data.current[:size].copy()
    if user is not None:
        mask &= data.user_index[:size] == data.users.index(user)
    candidates = np.flatnonzero(mask)
    sims = data.vectors[candidates] @ q.vector
    order = candidates[np.lexsort((candidates, -sims))][:40]
    return [data.profiles[i]["profile_id"] for i in order]


def _recall(got: Sequence[str], truth: Sequence[str], k: int = 10) -> float:
    expected = set(truth[:k])
    return len(set(got[:k]) & expected) / max(1, len(expected))


@contextlib.contextmanager
def _round_trips(factory: SessionFactory) -> Iterator[list[int]]:
    """Counts client messages that wait for the server (simple Query, extended-protocol Sync)
    through libpq's protocol trace of each reader connection checked out meanwhile."""
    counts = [0]
    engine = factory.reader_engine
    traces: list[Path] = []

    def checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        path = Path(tempfile.mktemp(prefix="rxs-trace-", dir="/tmp"))
        handle = path.open("w")
        traces.append(path)
        record.info["trace"] = handle
        dbapi_connection.pgconn.trace(handle.fileno())

    def checkin(dbapi_connection: Any, record: Any) -> None:
        handle = record.info.pop("trace", None)
        if handle is not None:
            dbapi_connection.pgconn.untrace()
            handle.close()

    event.listen(engine, "checkout", checkout)
    event.listen(engine, "checkin", checkin)
    try:
        yield counts
    finally:
        event.remove(engine, "checkout", checkout)
        event.remove(engine, "checkin", checkin)
        for path in traces:
            for line in path.read_text().splitlines():
                fields = line.split("\t")
                # "[timestamp] F <length> <message> ...": a frontend message that waits for
                # the server is a simple Query or an extended-protocol Sync.
                if "F" in fields[:2]:
                    at = fields.index("F")
                    if fields[at + 2 : at + 3] in (["Query"], ["Sync"]):
                        counts[0] += 1
            path.unlink()


def _time(fn: Callable[[int], Any], count: int, warmup: int) -> dict[str, float]:
    return bench._time_calls(fn, count, warmup, budget=120.0)


def _add(
    results: bench.Results,
    backend: str,
    group: str,
    name: str,
    value: float,
    unit: str,
    target: str | None = None,
    met: bool | None = None,
    **detail: Any,
) -> None:
    metric = bench.Metric(backend, group, name, value, unit, detail=detail)
    if target is not None:
        metric.target = target
        metric.met = met
    results.add(metric)


def _latency(
    results: bench.Results,
    backend: str,
    group: str,
    name: str,
    stats: dict[str, float],
    bound: float | None = None,
) -> None:
    target = None if bound is None else f"≤ {bound:g} ms"
    met = None if bound is None else stats["p95"] <= bound
    _add(results, backend, group, f"{name} p95", stats["p95"], "ms", target, met, **stats)
    _add(results, backend, group, f"{name} p50", stats["p50"], "ms")


def _hybrid_reference(
    text_ranked: list[str], vector_ranked: list[str], top_k: int = 10
) -> list[str]:
    fused = reciprocal_rank_fusion(text_ranked[:40], vector_ranked[:40])
    return [k for k, _ in fused[:top_k]]


def run(
    results: bench.Results,
    backend: str,
    factory: SessionFactory,
    data: bench.Dataset,
    queries: Sequence[bench.Query],
    size: int,
    args: argparse.Namespace,
) -> None:
    """Unfiltered and user-filtered vector / hybrid searches, recall, round trips, memory."""
    from reflexio_store.search import postgres, vector_index

    store = Store(factory)
    group = f"search-index@{size}"
    if backend == "sqlite":
        database = str(factory.storage.writer_url.url.database)
        started = time.perf_counter()
        store.search_profiles(embedding=queries[0].vector, mode="vector")
        deadline = time.monotonic() + 900
        while not vector_index.is_ready(database, "profiles") and time.monotonic() < deadline:
            time.sleep(0.2)
            store.search_profiles(embedding=queries[0].vector, mode="vector")
        _add(
            results,
            backend,
            group,
            "vector index build, background (s)",
            time.perf_counter() - started,
            "s",
        )
        _add(
            results,
            backend,
            group,
            "vector index memory (MB per table)",
            vector_index.memory_bytes(database, "profiles") / 1e6,
            "MB",
        )
    cases: list[tuple[str, Callable[[int], Any], float | None]] = []
    for mode in ("vector", "hybrid"):
        for filtered in (False, True):

            def call(i: int, mode: str = mode, filtered: bool = filtered) -> Any:
                q = queries[i % len(queries)]
                kwargs: dict[str, Any] = {"mode": mode, "embedding": q.vector}
                if mode == "hybrid":
                    kwargs["query"] = q.text
                if filtered:
                    kwargs["user_id"] = q.user
                return store.search_profiles(**kwargs)

            if backend == "sqlite":
                bound = 50.0 if not filtered else 10.0
            else:
                bound = (8.0 if filtered else 15.0) if mode == "hybrid" else None
            label = f"profiles {mode} filter={'user_id' if filtered else 'none'}"
            cases.append((label, call, bound))
    for label, call, bound in cases:
        _latency(results, backend, group, label, _time(call, args.queries, args.warmup), bound)
    if backend == "sqlite":
        # The same unfiltered searches with the index switched off: the exact scan, measured now.
        vector_index.enabled = False
        try:
            for label, call, _bound in cases:
                if "filter=none" in label:
                    stats = _time(call, max(10, args.queries // 4), 2)
                    _latency(results, backend, group, f"{label} exact scan (no index)", stats)
        finally:
            vector_index.enabled = True
    # Recall@10 against exact search (vector), and hybrid against fusing the exact vector
    # ranking with every text match ranked.
    sample = queries[: min(len(queries), 50)]
    for filtered in (False, True):
        vec, hyb = [], []
        for q in sample:
            user = q.user if filtered else None
            exact = _exact_vector(data, size, q, user)
            extra = {"user_id": user} if user else {}
            got = [
                h.item.profile_id
                for h in store.search_profiles(
                    embedding=q.vector, mode="vector", threshold=-1.0, **extra
                )
            ]
            vec.append(_recall(got, exact))
            with factory.reader() as s:
                from reflexio_store.store.search import search_profiles

                # The reference ranks every text match (no bound on the candidates).
                bounded, postgres.TEXT_CANDIDATES = postgres.TEXT_CANDIDATES, 10**9
                try:
                    text_all = [
                        h.item.profile_id
                        for h in search_profiles(s, q.text, mode="text", top_k=1000, **extra)
                    ]
                finally:
                    postgres.TEXT_CANDIDATES = bounded
                got_h = [
                    h.item.profile_id
                    for h in search_profiles(
                        s, q.text, embedding=q.vector, mode="hybrid", threshold=-1.0, **extra
                    )
                ]
            hyb.append(_recall(got_h, _hybrid_reference(text_all, exact)))
        label = "user_id" if filtered else "none"
        _add(
            results,
            backend,
            group,
            f"profiles vector recall@10 filter={label}",
            float(np.mean(vec)),
            "ratio",
            "≥ 0.95",
            float(np.mean(vec)) >= 0.95,
        )
        _add(
            results,
            backend,
            group,
            f"profiles hybrid recall@10 vs exact fusion of every text match, filter={label}",
            float(np.mean(hyb)),
            "ratio",
            "≥ 0.95",
            float(np.mean(hyb)) >= 0.95,
        )
    if backend == "pg":
        for mode in ("hybrid", "vector", "text"):
            for filtered in (False, True):
                q = queries[1]
                kwargs: dict[str, Any] = {"mode": mode}
                if mode != "vector":
                    kwargs["query"] = q.text
                if mode != "text":
                    kwargs["embedding"] = q.vector
                if filtered:
                    kwargs["user_id"] = q.user
                with _round_trips(factory) as trips:
                    store.search_profiles(**kwargs)
                _add(
                    results,
                    backend,
                    group,
                    f"round trips per search: {mode} filter={'user_id' if filtered else 'none'}",
                    float(trips[0]),
                    "",
                )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--sqlite-path", help="reuse (or keep) this SQLite file")
    parser.add_argument("--pg-url")
    parser.add_argument("--pg-read-url")
    parser.add_argument("--pg-schema", help="reuse (or keep) this schema")
    ours = parser.parse_args(argv)
    args = bench.parse_args(["--queries", str(ours.queries), "--warmup", str(ours.warmup)])
    data = bench.build_dataset(args, ours.size)
    queries = bench.build_queries(args, data.users)
    results = bench.Results()
    if not ours.no_sqlite:
        path = Path(ours.sqlite_path or tempfile.mktemp(prefix="rxs-search-", suffix=".db"))
        fresh = not path.exists()
        factory = bench._sqlite_factory(path, args)
        if fresh:
            _load(Store(factory), data, ours.size, args.batch)
        run(results, "sqlite", factory, data, queries, ours.size, args)
        factory.dispose()
        if ours.sqlite_path is None:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    if not ours.no_pg:
        cluster = None
        primary, replica = ours.pg_url, ours.pg_read_url
        if primary is None:
            from tests.support.pg_cluster import start_cluster

            cluster = start_cluster(
                Path(tempfile.mkdtemp(prefix="rxs-sb-", dir="/tmp")),
                {"shared_buffers": args.pg_shared_buffers},
            )
            primary, replica = cluster.primary_url, cluster.replica_url
        schema = ours.pg_schema or f"search_{uuid.uuid4().hex[:8]}"
        try:
            factory = bench._pg_factory(args, primary, replica, schema)
            # The primary: a schema migrated just now may not have reached the replica yet.
            with factory.reader("strong") as s:
                loaded = s.execute(select(func.count()).select_from(Profile)).scalar()
            if not loaded:
                bench._drop_hnsw(primary, schema, ["profiles"])
                _load(Store(factory), data, ours.size, args.batch)
                bench._build_hnsw(primary, schema, ["profiles"], args.pg_maintenance_mem)
                # Steady state: the visibility map set (index-only counts) and no autovacuum
                # pass running into the timed searches.
                bench._pg_exec(primary, f'VACUUM (ANALYZE) "{schema}".profiles')
            bench._wait_for_replica(primary, replica)
            run(results, "pg", factory, data, queries, ours.size, args)
            factory.dispose()
        finally:
            if ours.pg_schema is None:
                bench._pg_exec(primary, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            if cluster is not None:
                cluster.stop()
    bench.render(results)
    print(f"load average at end: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
