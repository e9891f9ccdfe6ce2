"""The scale curve for bench.py --large: profiles loaded up to 1M (default checkpoints 10k, 100k,
1M), with user-filtered search latency, the ingest rate over the whole load, the database's size
on disk and the process's memory at each checkpoint.

Rows are generated in chunks while loading (1M rows with 512-d vectors do not fit comfortably in
memory as Python dicts), from the same seeded workload and clustered vectors as the main run,
over --users users (50 by default: at 1M that is 20,000 profiles per user).

PostgreSQL: loaded through Store.add_profiles (binary COPY) with the profiles' HNSW index
dropped (maintaining it row by row costs about 1 ms a row here: a 1M-row load would take hours);
at each checkpoint it is built in one pass (its time is reported), the table vacuumed and
analyzed, the searches run, and the index dropped again. A user with at most VECTOR_EXACT_ROWS
(20,000) current profiles has its vectors scanned exactly (18,000 a user at 1M over 50 users);
one with more is searched through the HNSW index, as in production. A --large-budget (seconds per
database) bounds the load: when it runs out, the curve stops at the size reached and says so.
"""

from __future__ import annotations

import argparse
import resource
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks import bench
from reflexio_store import SessionFactory
from reflexio_store.demo.workload import ClusteredVectors, Workload, WorkloadSize
from reflexio_store.store import Store

MODES = ("hybrid", "vector", "text")


def _rows(args: argparse.Namespace, total: int) -> Iterator[list[dict[str, Any]]]:
    workload = Workload(WorkloadSize(users=args.users, profiles=total))
    vectors = ClusteredVectors(dimensions=args.dims)
    generated = workload.profiles()
    chunk = 0
    while True:
        part = [p for _, p in zip(range(args.large_chunk), generated, strict=False)]
        if not part:
            return
        # A stream per chunk: the noise differs from chunk to chunk (stream 1 is the queries').
        matrix = vectors.vectors(
            [p.topic for p in part], [p.variant for p in part], stream=100 + chunk
        )
        yield [{**p.row, "embedding": v} for p, v in zip(part, matrix, strict=True)]
        chunk += 1


def _rss_mb() -> tuple[float, float]:
    """(current, peak) resident memory of this process in MB."""
    current = 0.0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            current = int(line.split()[1]) / 1024
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _size_on_disk_mb(
    factory: SessionFactory, sqlite_path: Path | None, schema: str | None
) -> float:
    if sqlite_path is not None:
        files = [sqlite_path, Path(f"{sqlite_path}-wal"), Path(f"{sqlite_path}-shm")]
        return sum(f.stat().st_size for f in files if f.exists()) / 2**20
    with factory.writer_engine.connect() as conn:
        total = conn.exec_driver_sql(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s "
            "AND c.relkind IN ('r', 'm')",
            {"s": schema},
        ).scalar_one()
    return float(total) / 2**20


def run_large(
    results: bench.Results,
    args: argparse.Namespace,
    backend: str,
    factory: SessionFactory,
    *,
    sqlite_path: Path | None = None,
    primary: str | None = None,
    replica: str | None = None,
    schema: str | None = None,
) -> None:
    checkpoints = sorted({int(s) for s in str(args.large_sizes).split(",")})
    store = Store(factory)
    store.count_profiles()  # open and migrate outside the timing
    if backend == "pg" and primary is not None and schema is not None:
        bench._drop_hnsw(primary, schema, ["profiles"])
        results.notes.append(
            "pg --large: profiles loaded without their HNSW index (maintained row by row it costs "
            "about 1 ms a row), which is built at each checkpoint before the searches (a user "
            "with more than VECTOR_EXACT_ROWS rows is searched through it) and dropped again "
            "for the next part of the load"
        )
    queries = bench.build_queries(args, Workload(WorkloadSize(users=args.users)).users)
    rows = _rows(args, checkpoints[-1])
    loaded, load_seconds = 0, 0.0
    pending: list[dict[str, Any]] = []
    deadline = time.perf_counter() + args.large_budget
    for checkpoint in checkpoints:
        while loaded < checkpoint and time.perf_counter() < deadline:
            if not pending:
                pending = next(rows)
            chunk, pending = pending[: checkpoint - loaded], pending[checkpoint - loaded :]
            start = time.perf_counter()
            for batch in bench._batches(chunk, args.batch):
                store.add_profiles(batch)
            load_seconds += time.perf_counter() - start
            loaded += len(chunk)
        bench.console.log(f"{backend} large: {loaded:,} profiles loaded ({load_seconds:.0f} s)")
        if backend == "pg" and primary is not None and schema is not None:
            built = bench._build_hnsw(primary, schema, ["profiles"], args.pg_maintenance_mem)
            bench._pg_exec(primary, f'VACUUM (ANALYZE) "{schema}".profiles')
            results.add(
                bench.Metric(
                    backend,
                    f"large@{loaded}",
                    "HNSW build, profiles (s)",
                    built["profiles"],
                    "s",
                    detail={"maintenance_work_mem": args.pg_maintenance_mem},
                )
            )
            bench._wait_for_replica(primary, replica, timeout=600)
        group = f"large@{loaded}"
        for mode in MODES:
            cases = bench._search_cases(store, queries)
            call = next(c for e, m, f, c in cases if (e, m, f) == ("profiles", mode, "user_id"))
            stats = bench._time_calls(call, args.queries, args.warmup, args.case_budget)
            results.add(
                bench.Metric(
                    backend,
                    group,
                    f"profiles {mode} filter=user_id p95",
                    stats["p95"],
                    "ms",
                    detail={**stats, "profiles": loaded, "users": args.users},
                )
            )
        if backend == "pg" and primary is not None and schema is not None:
            for walk, how in ((False, ""), (True, ", every user walked through HNSW")):
                mean, worst = bench.pg_filtered_recall(
                    primary, schema, store, queries[:30], walk=walk
                )
                results.add(
                    bench.Metric(
                        backend,
                        group,
                        "profiles vector recall@10 filter=user_id (vs exact scan of the user's "
                        f"rows{how})",
                        mean,
                        "ratio",
                        detail={"worst_query": worst, "queries": 30},
                        target="" if walk else "≥ 0.95",
                        met=None if walk else mean >= 0.95,
                    )
                )
        results.add(
            bench.Metric(
                backend,
                group,
                "ingest rate over the whole load so far (profiles/s)",
                loaded / load_seconds if load_seconds else 0.0,
                "/s",
                detail={"rows": loaded, "seconds": load_seconds},
            )
        )
        size = _size_on_disk_mb(factory, sqlite_path, schema)
        results.add(bench.Metric(backend, group, "database size on disk (MB)", size, "MB"))
        current, peak = _rss_mb()
        results.add(
            bench.Metric(
                backend,
                group,
                "process memory, resident (MB; no in-process index is built for these searches)",
                current,
                "MB",
                detail={"peak_mb": peak},
            )
        )
        if backend == "pg" and primary is not None and schema is not None:
            bench._drop_hnsw(primary, schema, ["profiles"])
        if loaded < checkpoint:
            results.notes.append(
                f"{backend} --large: the load budget ({args.large_budget:.0f} s) ran out at "
                f"{loaded:,} profiles, before the {checkpoint:,} checkpoint"
            )
            break
    _large_target(results, backend, checkpoints)


def _large_target(results: bench.Results, backend: str, checkpoints: list[int]) -> None:
    """User-filtered hybrid p95 at the largest size within 2x of its figure at the second."""
    if len(checkpoints) < 2:
        return
    name = "profiles hybrid filter=user_id p95"
    base = results.find(backend, f"large@{checkpoints[-2]}", name)
    top = results.find(backend, f"large@{checkpoints[-1]}", name)
    if base is None or top is None:
        results.notes.append(f"{backend} --large: the 2x scale target was not measured")
        return
    ratio = top.value / base.value
    metric = bench.Metric(
        backend,
        f"large@{checkpoints[-1]}",
        f"hybrid user-filtered p95 at {checkpoints[-1]:,} / at {checkpoints[-2]:,}",
        ratio,
        "x",
        target="≤ 2.00x",
        met=ratio <= 2.0,
    )
    results.add(metric)
