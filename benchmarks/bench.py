#!/usr/bin/env python
"""reflexio_store benchmark: ingest, search latency, vector recall and workflow state rates on
SQLite and on PostgreSQL (writes on the primary, searches through the reader = the replica).

    python benchmarks/bench.py --quick                 # ~1 minute, small sizes
    python benchmarks/bench.py                         # full: 10k / 20k / 100k profiles
    python benchmarks/bench.py --pg-url ... --pg-read-url ...   # an existing PostgreSQL

What is measured, and how:

- Data: the seeded synthetic Reflexio workload (reflexio_store.demo.workload) over 50 users.
  Profile vectors are *clustered* (50 topic centroids + per-variant offsets + noise, unit
  length, 512-d), so nearest neighbours are meaningful and HNSW recall is not trivially 1.
  Interactions and playbooks (loaded in proportion to the profiles, see --ratios) get vectors
  from the demo hashing embedder.
- Ingest: Store.add_profiles in batches of --batch rows (rows already built; the Store's
  validation, conversion, insert and full-text/vector entries are timed) against the same rows
  through the raw driver into an identically migrated table: pysqlite3 executemany on SQLite,
  psycopg binary COPY on PostgreSQL (building the driver's tuples is timed too).
- PostgreSQL bulk load: after the ingest measurement (made with every index in place), the
  rest of the rows are loaded with the HNSW indexes of the loaded tables dropped, and the
  indexes are then rebuilt with maintenance_work_mem raised (--pg-maintenance-mem). This
  happens only in the benchmark's own throwaway schema, and the figures for both ways are
  printed (incremental insert rate with the index vs bulk rate + build time).
- Searches: --queries timed calls per case after --warmup untimed ones, through the public
  Store methods (session checkout and result loading included), p50/p95/mean in ms.
- Recall@10 (vector mode, the store's default ef_search) against an exact brute-force numpy
  search over the same rows and filters (status current), unfiltered and user-filtered.
- Workflow: save_state as single-row commits (new runs, then updates of the same runs), and
  load_state, one call each.

The JSON written to --out holds every figure plus the environment. Nothing here is part of the
test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: tests.support must import
    sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from reflexio_store import (  # noqa: E402
    SessionFactory,
    StorageConfigPostgres,
    StorageConfigSQLite,
    StorageSettings,
)
from reflexio_store.demo.embedder import HashingEmbedder  # noqa: E402
from reflexio_store.demo.workload import (  # noqa: E402
    ALL_TOPICS,
    ClusteredVectors,
    Workload,
    WorkloadSize,
)
from reflexio_store.migrations import upgrade  # noqa: E402
from reflexio_store.models.base import HNSW_EF_CONSTRUCTION, HNSW_M  # noqa: E402
from reflexio_store.settings import resolve_storage  # noqa: E402
from reflexio_store.store import AsyncStore, Store  # noqa: E402

FloatArray = npt.NDArray[np.float32]
PROFILE_COLUMNS = (
    "profile_id",
    "user_id",
    "content",
    "custom_features",
    "extractor_names",
    "source",
    "status",
    "generated_from_request_id",
    "profile_time_to_live",
    "expanded_terms",
    "tags",
    "embedding",
    "created_at",
)
JSON_COLUMNS = frozenset({"custom_features", "extractor_names", "tags"})
HNSW_TABLES = ("profiles", "interactions", "user_playbooks", "agent_playbooks")
MODES = ("text", "vector", "hybrid")

# A pipe or a log file gets a wide table instead of rich's 80-column default.
console = Console() if sys.stdout.isatty() else Console(width=160)


# ----------------------------------------------------------------------------------- results


@dataclass
class Metric:
    backend: str
    group: str
    name: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, metric: Metric) -> Metric:
        self.metrics.append(metric)
        tag = "" if metric.met is None else (" [green]met[/]" if metric.met else " [red]NOT met[/]")
        console.log(
            f"{metric.backend:>6} {metric.group}: {metric.name} = {_fmt(metric.value, metric.unit)}"
            f"{tag}"
        )
        return metric

    def find(self, backend: str, group: str, name: str) -> Metric | None:
        for metric in self.metrics:
            if (metric.backend, metric.group, metric.name) == (backend, group, name):
                return metric
        return None


def _fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit == "ratio":
        return f"{value:.3f}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value:.1f} s"
    return f"{value:,.0f} {unit}"


def _latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    array = np.asarray(samples_ms)
    return {
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "mean": float(array.mean()),
        "max": float(array.max()),
        "n": float(len(array)),
    }


def _time_calls(
    fn: Callable[[int], Any], count: int, warmup: int, budget: float
) -> dict[str, float]:
    """Latencies of `count` calls after `warmup` untimed ones. A case slower than `budget`
    seconds in all stops early (after at least 10 timed calls) so that one pathological query
    plan cannot hold the whole run; the stats record how many calls were timed."""
    began = time.perf_counter()
    for i in range(warmup):
        fn(i)
        if time.perf_counter() - began > budget / 4:
            break
    samples: list[float] = []
    for i in range(count):
        start = time.perf_counter()
        fn(warmup + i)
        samples.append((time.perf_counter() - start) * 1000)
        if len(samples) >= 10 and time.perf_counter() - began > budget:
            break
    return _latency_stats(samples)


# -------------------------------------------------------------------------------------- data


@dataclass
class Dataset:
    """Every row the run may load, built once up front (building is never timed)."""

    users: list[str]
    profiles: list[dict[str, Any]]
    vectors: FloatArray
    current: npt.NDArray[np.bool_]
    user_index: npt.NDArray[np.int64]
    requests: list[dict[str, Any]]
    user_playbooks: list[dict[str, Any]]
    agent_playbooks: list[dict[str, Any]]


@dataclass
class Query:
    text: str
    vector: FloatArray
    hashed: FloatArray  # the query text through the hashing embedder (interactions, playbooks)
    user: str
    playbook_name: str


def build_dataset(args: argparse.Namespace, max_profiles: int) -> Dataset:
    started = time.perf_counter()
    ratios = _ratios(args.ratios)
    size = WorkloadSize(
        users=args.users,
        profiles=max_profiles,
        requests=max(1, int(max_profiles * ratios[0] / 4)),  # ~4 interactions per request
        user_playbooks=max(1, int(max_profiles * ratios[1])),
        agent_playbooks=max(1, int(max_profiles * ratios[2])),
    )
    workload = Workload(size)
    generated = list(workload.profiles())
    vectors = ClusteredVectors(dimensions=args.dims).vectors(
        [p.topic for p in generated], [p.variant for p in generated]
    )
    profiles = []
    for p, vector in zip(generated, vectors, strict=True):
        row = dict(p.row)
        row["embedding"] = vector
        profiles.append(row)
    embedder = HashingEmbedder(args.dims)
    requests = list(workload.requests())
    for request in requests:
        for interaction in request["interactions"]:
            interaction["embedding"] = embedder.embed(interaction["content"])
    user_playbooks = list(workload.user_playbooks())
    agent_playbooks = list(workload.agent_playbooks())
    for row in itertools.chain(user_playbooks, agent_playbooks):
        row["embedding"] = embedder.embed(f"{row['content']} {row['trigger']}")
    users = workload.users
    position = {user: i for i, user in enumerate(users)}
    console.log(
        f"dataset: {len(profiles):,} profiles, {len(requests):,} requests "
        f"({sum(len(r['interactions']) for r in requests):,} interactions), "
        f"{len(user_playbooks):,} user / {len(agent_playbooks):,} agent playbooks, "
        f"{args.dims}-d, built in {time.perf_counter() - started:.1f} s"
    )
    return Dataset(
        users=users,
        profiles=profiles,
        vectors=vectors,
        current=np.array([row["status"] == "current" for row in profiles]),
        user_index=np.array([position[row["user_id"]] for row in profiles], dtype=np.int64),
        requests=requests,
        user_playbooks=user_playbooks,
        agent_playbooks=agent_playbooks,
    )


def build_queries(args: argparse.Namespace, users: Sequence[str]) -> list[Query]:
    rng = np.random.default_rng(99)
    count = args.queries + args.warmup
    topics = rng.integers(0, len(ALL_TOPICS), count)
    variants = rng.integers(0, 16, count)
    vectors = ClusteredVectors(dimensions=args.dims).vectors(topics, variants, stream=1)
    embedder = HashingEmbedder(args.dims)
    names = ("code_style", "scheduling", "ui", "context")
    queries = []
    for i in range(count):
        phrase = ALL_TOPICS[int(topics[i])].query
        queries.append(
            Query(
                text=phrase,
                vector=vectors[i],
                hashed=embedder.embed(phrase),
                user=users[i % len(users)],
                playbook_name=names[i % len(names)],
            )
        )
    return queries


def _ratios(raw: str) -> tuple[float, float, float]:
    parts = [float(x) for x in raw.split(",")]
    if len(parts) != 3:
        raise SystemExit(
            "--ratios takes three numbers: interactions,user_playbooks,agent_playbooks"
        )
    return parts[0], parts[1], parts[2]


def _batches(rows: Sequence[dict[str, Any]], size: int) -> Iterator[Sequence[dict[str, Any]]]:
    for i in range(0, len(rows), size):
        yield rows[i : i + size]


# ----------------------------------------------------------------------------------- targets


def _target(
    results: Results,
    backend: str,
    group: str,
    name: str,
    op: str,
    bound: float,
    label: str,
    on: str = "value",
) -> None:
    """Mark a metric with its target. `on="p50"` checks the p50 kept in a p95 metric's detail."""
    metric = results.find(backend, group, name)
    if metric is None:
        results.notes.append(f"target not measured in this run: {backend} {label}")
        return
    value = metric.value if on == "value" else float(metric.detail[on])
    prefix = "" if on == "value" else f"{on} "
    metric.target = f"{prefix}{op} {_fmt(bound, metric.unit)}"
    metric.met = value <= bound if op == "≤" else value >= bound


# ------------------------------------------------------------------------------------ common


def _store_load(store: Store, data: Dataset, lo: int, hi: int, batch: int) -> float:
    """Load profiles [lo, hi) through the Store; return seconds."""
    rows = data.profiles[lo:hi]
    start = time.perf_counter()
    for chunk in _batches(rows, batch):
        store.add_profiles(chunk)
    return time.perf_counter() - start


def _load_others(
    store: Store, data: Dataset, fraction_lo: float, fraction_hi: float, batch: int
) -> dict[str, int]:
    """Load the slice [lo, hi) (as fractions of the full lists) of requests and playbooks."""
    counts = {}
    for name, rows, add in (
        ("requests", data.requests, store.add_requests),
        ("user_playbooks", data.user_playbooks, store.add_user_playbooks),
        ("agent_playbooks", data.agent_playbooks, store.add_agent_playbooks),
    ):
        lo, hi = int(len(rows) * fraction_lo), int(len(rows) * fraction_hi)
        for chunk in _batches(rows[lo:hi], max(1, batch // 4)):
            add(chunk)
        counts[name] = hi - lo
    return counts


def _search_cases(
    store: Store, queries: Sequence[Query]
) -> list[tuple[str, str, str, Callable[[int], Any]]]:
    """(entity, mode, filter label, call) for every entity x mode x {filtered, unfiltered}."""
    cases: list[tuple[str, str, str, Callable[[int], Any]]] = []

    def args_for(q: Query, mode: str, hashed: bool) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"mode": mode}
        if mode != "vector":
            kwargs["query"] = q.text
        if mode != "text":
            kwargs["embedding"] = q.hashed if hashed else q.vector
        return kwargs

    searches: list[tuple[str, Callable[..., Any], str, bool]] = [
        ("profiles", store.search_profiles, "user_id", False),
        ("interactions", store.search_interactions, "user_id", True),
        ("user_playbooks", store.search_user_playbooks, "user_id", True),
        ("agent_playbooks", store.search_agent_playbooks, "playbook_name", True),
    ]
    for entity, method, filter_name, hashed in searches:
        for mode in MODES:
            for filtered in (True, False):
                label = filter_name if filtered else "none"

                def call(
                    i: int,
                    method: Any = method,
                    mode: str = mode,
                    filtered: bool = filtered,
                    filter_name: str = filter_name,
                    hashed: bool = hashed,
                ) -> Any:
                    q = queries[i % len(queries)]
                    kwargs = args_for(q, mode, hashed)
                    if filtered:
                        kwargs[filter_name] = (
                            q.user if filter_name == "user_id" else q.playbook_name
                        )
                    return method(**kwargs)

                cases.append((entity, mode, label, call))
    return cases


def measure_searches(
    results: Results,
    backend: str,
    store: Store,
    queries: Sequence[Query],
    size: int,
    args: argparse.Namespace,
    entities: Sequence[str],
) -> None:
    for entity, mode, label, call in _search_cases(store, queries):
        if entity not in entities:
            continue
        stats = _time_calls(call, args.queries, args.warmup, args.case_budget)
        hits = len(call(0))
        results.add(
            Metric(
                backend,
                f"search@{size}",
                f"{entity} {mode} filter={label} p95",
                stats["p95"],
                "ms",
                detail={**stats, "top_k": 10, "hits_first_query": hits},
            )
        )
        results.add(
            Metric(
                backend, f"search@{size}", f"{entity} {mode} filter={label} p50", stats["p50"], "ms"
            )
        )


def measure_recall(
    results: Results,
    backend: str,
    store: Store,
    data: Dataset,
    loaded: int,
    queries: Sequence[Query],
    ef_values: Sequence[int | None],
) -> None:
    """Recall@10 of the store's vector search against exact search over the loaded rows."""
    vectors = data.vectors[:loaded]
    current = data.current[:loaded]
    user_index = data.user_index[:loaded]
    ids = np.array([row["profile_id"] for row in data.profiles[:loaded]])
    position = {user: i for i, user in enumerate(data.users)}
    sample = queries[: min(len(queries), 100)]
    for ef in ef_values:
        for filtered in (False, True):
            recalls = []
            for q in sample:
                mask = current & (user_index == position[q.user]) if filtered else current
                candidates = np.flatnonzero(mask)
                sims = vectors[candidates] @ q.vector
                k = min(10, len(candidates))
                top = candidates[np.argpartition(-sims, k - 1)[:k]]
                exact = set(ids[top].tolist())
                kwargs: dict[str, Any] = {
                    "embedding": q.vector,
                    "mode": "vector",
                    "top_k": 10,
                    "threshold": -1.0,
                }
                if ef is not None:
                    kwargs["ef_search"] = ef
                if filtered:
                    kwargs["user_id"] = q.user
                got = {hit.item.profile_id for hit in store.search_profiles(**kwargs)}
                recalls.append(len(got & exact) / max(1, len(exact)))
            label = f"ef_search={ef if ef is not None else 'default'}"
            name = f"profiles vector recall@10 filter={'user_id' if filtered else 'none'} {label}"
            results.add(
                Metric(
                    backend,
                    f"recall@{loaded}",
                    name,
                    float(np.mean(recalls)),
                    "ratio",
                    detail={"min": float(np.min(recalls))},
                )
            )


def pg_filtered_recall(
    primary: str, schema: str, store: Store, queries: Sequence[Query], *, walk: bool = False
) -> tuple[float, float]:
    """(mean, worst) recall@10 of the store's user-filtered vector search against an exact scan
    of the user's current rows, in SQL on the primary (a user with more than VECTOR_EXACT_ROWS
    rows is searched through the filtered HNSW walk, whose recall falls as the user's share of
    the table does). `walk`: every user is searched through the walk, as one above the bound."""
    import psycopg
    from pgvector.psycopg import register_vector

    from reflexio_store.search import postgres as pg_search

    found = []
    bound = pg_search.VECTOR_EXACT_ROWS
    pg_search.VECTOR_EXACT_ROWS = 0 if walk else bound
    try:
        with psycopg.connect(**_psycopg_kwargs(primary), autocommit=True) as conn:
            register_vector(conn)
            for q in queries:
                rows = conn.execute(
                    f'SELECT profile_id FROM "{schema}".profiles WHERE user_id = %s '
                    "AND status = 'current' AND embedding IS NOT NULL "
                    "ORDER BY (embedding OPERATOR(public.<=>) %s) + 0 LIMIT 10",
                    (q.user, np.asarray(q.vector, dtype=np.float32)),
                ).fetchall()
                exact = {r[0] for r in rows}
                hits = store.search_profiles(
                    embedding=q.vector, user_id=q.user, mode="vector", threshold=-1.0
                )
                got = {h.item.profile_id for h in hits}
                found.append(len(got & exact) / max(1, len(exact)))
    finally:
        pg_search.VECTOR_EXACT_ROWS = bound
    return float(np.mean(found)), float(np.min(found))


def measure_workflow(
    results: Results,
    backend: str,
    factory: SessionFactory,
    args: argparse.Namespace,
    raw_target: Any = None,
    schema: str | None = None,
    variant: str = "",
    rounds: int | None = None,
) -> None:
    """Workflow state rates, Store and AsyncStore side by side (and the raw driver), then
    list_runs. `variant` labels a PostgreSQL connection setting (pooler) in the group name."""
    from benchmarks import bench_workflow as bw

    group = f"workflow{variant}"
    count = args.workflow_ops if not variant else max(200, args.workflow_ops // 3)
    rounds = rounds if rounds is not None else (args.rounds if not variant else 1)
    sync, asyn = bw.measure_rates(factory, count, rounds)
    raw = bw.measure_raw(backend, raw_target, count, rounds, schema) if raw_target else None
    for op in bw.RATE_OPS:
        rate, every = sync[op]
        arate, aevery = asyn[op]
        results.add(
            Metric(backend, group, f"{op}: Store (/s)", rate, "/s", detail={"rounds": every})
        )
        results.add(
            Metric(backend, group, f"{op}: AsyncStore (/s)", arate, "/s", detail={"rounds": aevery})
        )
        results.add(
            Metric(backend, group, f"{op}: AsyncStore time / Store time", rate / arate, "x")
        )
        if raw is not None:
            raw_rate, raw_every = raw[op]
            results.add(
                Metric(
                    backend, group, f"{op}: raw driver (/s)", raw_rate, "/s",
                    detail={"rounds": raw_every},
                )
            )  # fmt: skip
            results.add(
                Metric(backend, group, f"{op}: raw rate / Store rate", raw_rate / rate, "x")
            )
    save = min(sync["save_state new run"][0], sync["save_state update"][0])
    results.add(Metric(backend, group, "save_state (slower of the two)", save, "/s"))
    results.add(Metric(backend, group, "load_state (/s)", sync["load_state"][0], "/s"))
    if variant:
        return
    listed = bw.measure_list_runs(factory, calls=max(10, args.queries // 2))
    for label, samples in (("Store", listed["sync"]), ("AsyncStore", listed["async"])):
        stats = _latency_stats(samples)
        results.add(
            Metric(
                backend,
                group,
                f"list_runs(status=...) {listed['rows']} of {bw.LIST_RUNS} runs, {label} p95",
                stats["p95"],
                "ms",
                detail={**stats, "rows": listed["rows"]},
            )
        )
        results.add(
            Metric(
                backend,
                group,
                f"list_runs(status=...) {listed['rows']} of {bw.LIST_RUNS} runs, {label} p50",
                stats["p50"],
                "ms",
            )
        )
    store = Store(factory)
    start = time.perf_counter()
    rows = store.list_runs(metadata_filter={"tags": ["backfill"]}, limit=50)
    results.add(
        Metric(
            backend,
            group,
            "list_runs metadata filter, limit 50",
            (time.perf_counter() - start) * 1000,
            "ms",
            detail={"rows": len(rows)},
        )
    )


def measure_retention(
    results: Results, backend: str, factory: SessionFactory, args: argparse.Namespace
) -> None:
    """enforce_row_limits() with nothing to delete, one row under the 250,000 default limit."""
    from benchmarks import bench_retention as br

    profiles = args.retention_rows
    seconds = br.fill(factory, profiles, profiles // 16, profiles // 4)
    console.log(f"{backend}: retention data ({profiles:,} profiles) generated in {seconds:.1f} s")
    stats = br.measure(Store(factory), calls=args.retention_calls)
    results.add(
        Metric(
            backend,
            "retention",
            f"enforce_row_limits(), nothing to delete, {profiles:,} profiles p95",
            stats["p95"],
            "ms",
            detail={**stats, "profiles": profiles},
        )
    )
    results.add(
        Metric(
            backend,
            "retention",
            f"enforce_row_limits(), nothing to delete, {profiles:,} profiles p50",
            stats["p50"],
            "ms",
        )
    )


def measure_async_ingest(
    results: Results,
    backend: str,
    make_factory: Callable[[str], SessionFactory],
    data: Dataset,
    rows: int,
    batch: int,
) -> None:
    """add_profiles through Store and through AsyncStore into two fresh stores, in interleaved
    halves (both see the same background load and the same index sizes)."""
    sync_factory, async_factory = make_factory("sync"), make_factory("async")
    sync_store, async_store = Store(sync_factory), AsyncStore(async_factory)
    sync_store.count_profiles()
    asyncio.run(async_store.count_profiles())
    half = max(1, rows // 2)
    seconds = {"sync": 0.0, "async": 0.0}

    async def async_load(lo: int, hi: int) -> None:
        for chunk in _batches(data.profiles[lo:hi], batch):
            await async_store.add_profiles(chunk)

    for lo in (0, half):
        seconds["sync"] += _store_load(sync_store, data, lo, lo + half, batch)
        start = time.perf_counter()
        asyncio.run(async_load(lo, lo + half))
        seconds["async"] += time.perf_counter() - start
    sync_factory.dispose()
    async_factory.dispose()
    total = 2 * half
    results.add(
        Metric(backend, "ingest", "add_profiles: Store (profiles/s)", total / seconds["sync"], "/s")
    )
    results.add(
        Metric(
            backend,
            "ingest",
            "add_profiles: AsyncStore (profiles/s)",
            total / seconds["async"],
            "/s",
        )
    )
    results.add(
        Metric(
            backend, "ingest", "add_profiles: AsyncStore time / Store time",
            seconds["async"] / seconds["sync"], "x", detail={"rows": total},
        )
    )  # fmt: skip


ASYNC_SEARCH_CASES = (
    ("profiles", "hybrid", "user_id"),
    ("profiles", "hybrid", "none"),
    ("profiles", "vector", "user_id"),
    ("profiles", "text", "user_id"),
)


def measure_async_searches(
    results: Results,
    backend: str,
    store: Store,
    queries: Sequence[Query],
    size: int,
    args: argparse.Namespace,
) -> None:
    """A few search cases through Store and AsyncStore, p50 side by side."""
    astore = AsyncStore(store.factory)
    sync_cases = {(e, m, f): c for e, m, f, c in _search_cases(store, queries)}
    async_cases = {(e, m, f): c for e, m, f, c in _search_cases(astore, queries)}  # type: ignore[arg-type]
    for key in ASYNC_SEARCH_CASES:
        sync_stats = _time_calls(sync_cases[key], args.queries, args.warmup, args.case_budget)

        async def timed(call: Callable[[int], Any] = async_cases[key]) -> list[float]:
            for i in range(args.warmup):
                await call(i)
            samples = []
            for i in range(args.queries):
                start = time.perf_counter()
                await call(args.warmup + i)
                samples.append((time.perf_counter() - start) * 1000)
            return samples

        async_stats = _latency_stats(asyncio.run(timed()))
        entity, mode, label = key
        name = f"{entity} {mode} filter={label}"
        results.add(
            Metric(
                backend,
                f"async-search@{size}",
                f"{name}: AsyncStore p95",
                async_stats["p95"],
                "ms",
                detail={
                    **async_stats,
                    "store_p50": sync_stats["p50"],
                    "store_p95": sync_stats["p95"],
                },
            )
        )
        results.add(
            Metric(
                backend,
                f"async-search@{size}",
                f"{name}: AsyncStore p50 / Store p50",
                async_stats["p50"] / sync_stats["p50"],
                "x",
                detail={"store": sync_stats, "async": async_stats},
            )
        )


# ------------------------------------------------------------------------------------ SQLite


def _sqlite_factory(path: Path, args: argparse.Namespace) -> SessionFactory:
    config = StorageConfigSQLite(db_url=f"sqlite:///{path}")
    return SessionFactory.from_config(
        config, settings=StorageSettings(embedding_dimensions=args.dims)
    )


def _sqlite_raw_ingest(path: Path, rows: Sequence[dict[str, Any]], batch: int) -> float:
    """The same rows with the raw driver (pysqlite3 executemany), one transaction per batch, with
    the connection settings the store uses; the FTS5 triggers fire here too."""
    from reflexio_store.engines import sqlite_module

    module = sqlite_module()
    conn = module.connect(str(path), isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    placeholders = ", ".join("?" for _ in PROFILE_COLUMNS)
    sql = f"INSERT INTO profiles ({', '.join(PROFILE_COLUMNS)}) VALUES ({placeholders})"
    start = time.perf_counter()
    for chunk in _batches(rows, batch):
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        params = [
            tuple(
                json.dumps(row[c])
                if c in JSON_COLUMNS
                else row[c].tobytes()
                if c == "embedding"
                else stamp
                if c == "created_at"
                else row[c]
                for c in PROFILE_COLUMNS
            )
            for row in chunk
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, params)
        conn.execute("COMMIT")
    seconds = time.perf_counter() - start
    conn.close()
    return seconds


def run_sqlite(
    results: Results,
    args: argparse.Namespace,
    data: Dataset,
    queries: Sequence[Query],
    sizes: Sequence[int],
    workdir: Path,
) -> None:
    backend = "sqlite"
    console.rule("SQLite")
    ingest_n = min(args.ingest_rows, sizes[0])

    raw_factory = _sqlite_factory(workdir / "raw.db", args)
    with raw_factory.writer():
        pass  # migrate the raw-driver database to the same schema
    raw_factory.dispose()
    raw_seconds = _sqlite_raw_ingest(workdir / "raw.db", data.profiles[:ingest_n], args.batch)

    factory = _sqlite_factory(workdir / "store.db", args)
    store = Store(factory)
    store.count_profiles()  # open and migrate outside the timing
    seconds = _store_load(store, data, 0, ingest_n, args.batch)
    _record_ingest(results, backend, ingest_n, seconds, raw_seconds, "pysqlite3 executemany")
    measure_async_ingest(
        results,
        backend,
        lambda tag: _sqlite_factory(workdir / f"ingest-{tag}.db", args),
        data,
        ingest_n,
        args.batch,
    )

    loaded = ingest_n
    fraction = 0.0
    full = len(data.profiles)
    for size in sizes:
        if size > loaded:
            seconds = _store_load(store, data, loaded, size, args.batch)
            console.log(
                f"sqlite: loaded profiles {loaded:,}..{size:,} at "
                f"{(size - loaded) / seconds:,.0f}/s"
            )
            loaded = size
        counts = _load_others(store, data, fraction, size / full, args.batch)
        fraction = size / full
        console.log(f"sqlite: {size:,} profiles; others loaded {counts}")
        measure_searches(results, backend, store, queries, size, args, _entities(args, size, sizes))
        measure_recall(results, backend, store, data, size, queries[:50], [None])
        if size == sizes[-1]:
            measure_async_searches(results, backend, store, queries, size, args)
    measure_workflow(results, backend, factory, args, raw_target=workdir / "store.db")
    factory.dispose()
    if not args.no_retention:
        retention_factory = _sqlite_factory(workdir / "retention.db", args)
        measure_retention(results, backend, retention_factory, args)
        retention_factory.dispose()


def _entities(args: argparse.Namespace, size: int, sizes: Sequence[int]) -> list[str]:
    if args.all_entities_every_size or size == sizes[-1]:
        return ["profiles", "interactions", "user_playbooks", "agent_playbooks"]
    return ["profiles"]


def _record_ingest(
    results: Results, backend: str, rows: int, seconds: float, raw_seconds: float, raw_label: str
) -> None:
    rate = rows / seconds
    raw_rate = rows / raw_seconds
    results.add(
        Metric(
            backend,
            "ingest",
            "Store.add_profiles (profiles/s, with search entries)",
            rate,
            "/s",
            detail={"rows": rows, "seconds": seconds},
        )
    )
    results.add(
        Metric(
            backend,
            "ingest",
            f"raw driver: {raw_label} (profiles/s)",
            raw_rate,
            "/s",
            detail={"rows": rows, "seconds": raw_seconds},
        )
    )
    results.add(Metric(backend, "ingest", "raw rate / Store rate", raw_rate / rate, "x"))


# -------------------------------------------------------------------------------- PostgreSQL


def _psycopg_kwargs(url: str) -> dict[str, Any]:
    u = make_url(url)
    host = u.host or u.query.get("host")
    port = u.port or u.query.get("port")
    kwargs: dict[str, Any] = {"user": u.username, "dbname": u.database or "postgres"}
    if u.password:
        kwargs["password"] = u.password
    if host:
        kwargs["host"] = host if isinstance(host, str) else host[0]
    if port:
        kwargs["port"] = int(port if isinstance(port, (str, int)) else port[0])
    return kwargs


def _wait_for_replica(primary_url: str, replica_url: str | None, timeout: float = 120.0) -> None:
    from tests.support.pg_cluster import wait_for_replay

    wait_for_replay(primary_url, replica_url, timeout)


def _pg_factory(
    args: argparse.Namespace,
    primary: str,
    replica: str | None,
    schema: str,
    pooler: str = "none",
) -> SessionFactory:
    settings = StorageSettings(embedding_dimensions=args.dims, postgres_pooler=pooler)
    config = StorageConfigPostgres(db_url=primary, read_db_url=replica, schema=schema)
    upgrade(resolve_storage(config, settings))
    return SessionFactory.from_config(config, settings=settings)


def _pg_raw_ingest(primary: str, schema: str, rows: Sequence[dict[str, Any]], batch: int) -> float:
    """The same rows through psycopg's binary COPY into an identically migrated table."""
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg.types.json import Jsonb

    types = [
        "text",
        "text",
        "text",
        "jsonb",
        "jsonb",
        "text",
        "varchar",
        "text",
        "text",
        "text",
        "jsonb",
        "vector",
        "timestamptz",
    ]
    columns = ", ".join(PROFILE_COLUMNS)
    copy_sql = f'COPY "{schema}".profiles ({columns}) FROM STDIN (FORMAT BINARY)'
    with psycopg.connect(**_psycopg_kwargs(primary)) as conn:
        register_vector(conn)
        start = time.perf_counter()
        for chunk in _batches(rows, batch):
            stamp = datetime.now(UTC)
            with (
                conn.cursor() as cur,
                cur.copy(copy_sql) as copy,
            ):
                copy.set_types(types)
                for row in chunk:
                    copy.write_row(
                        [
                            Jsonb(row[c])
                            if c in JSON_COLUMNS
                            else stamp
                            if c == "created_at"
                            else row[c]
                            for c in PROFILE_COLUMNS
                        ]
                    )
            conn.commit()
        return time.perf_counter() - start


def _pg_exec(primary: str, sql: str) -> float:
    import psycopg

    start = time.perf_counter()
    with psycopg.connect(**_psycopg_kwargs(primary), autocommit=True) as conn:
        for statement in sql.split(";\n"):
            if statement.strip():
                conn.execute(statement)
    return time.perf_counter() - start


def _drop_hnsw(primary: str, schema: str, tables: Sequence[str]) -> None:
    _pg_exec(
        primary,
        ";\n".join(f'DROP INDEX IF EXISTS "{schema}".ix_{t}_embedding_hnsw' for t in tables),
    )


def _build_hnsw(primary: str, schema: str, tables: Sequence[str], mem: str) -> dict[str, float]:
    """Rebuild each table's HNSW index; seconds per table.

    The same definition as the migration (vector_cosine_ops, m and ef_construction of
    reflexio_store.models.base), built in one pass over the loaded rows with
    maintenance_work_mem raised so the graph is built in memory, and one parallel worker
    beside the leader (2 cores).
    """
    import psycopg

    seconds: dict[str, float] = {}
    with psycopg.connect(**_psycopg_kwargs(primary), autocommit=True) as conn:
        conn.execute(f"SET maintenance_work_mem = '{mem}'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        for t in tables:
            start = time.perf_counter()
            conn.execute(
                f'CREATE INDEX ix_{t}_embedding_hnsw ON "{schema}".{t} USING hnsw '
                f"(embedding vector_cosine_ops) WITH (m = {HNSW_M}, "
                f"ef_construction = {HNSW_EF_CONSTRUCTION})"
            )
            seconds[t] = time.perf_counter() - start
        for t in HNSW_TABLES:
            conn.execute(f'ANALYZE "{schema}".{t}')
    return seconds


def _row_counts(primary: str, schema: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(**_psycopg_kwargs(primary)) as conn:
        return {
            t: int(conn.execute(f'SELECT count(*) FROM "{schema}".{t}').fetchone()[0])  # type: ignore[index]
            for t in HNSW_TABLES
        }


def _pgvector_recall(
    results: Results,
    primary: str,
    schema: str,
    data: Dataset,
    loaded: int,
    queries: Sequence[Query],
    ef_values: Sequence[int],
) -> None:
    """Recall@10 of a bare pgvector query (no store, no filter) on the same index: tells the
    index's own limit apart from anything the store's query adds or loses."""
    import psycopg
    from pgvector.psycopg import register_vector

    ids = np.array([row["profile_id"] for row in data.profiles[:loaded]])
    vectors = data.vectors[:loaded]
    sample = queries[: min(len(queries), 100)]
    exact = []
    for q in sample:
        sims = vectors @ q.vector
        exact.append(set(ids[np.argpartition(-sims, 9)[:10]].tolist()))
    sql = f'SELECT profile_id FROM "{schema}".profiles ORDER BY embedding <=> %s LIMIT 10'
    with psycopg.connect(**_psycopg_kwargs(primary), autocommit=True) as conn:
        register_vector(conn)
        for ef in ef_values:
            conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            recalls = []
            for q, truth in zip(sample, exact, strict=True):
                got = {row[0] for row in conn.execute(sql, (q.vector,))}
                recalls.append(len(got & truth) / 10)
            name = f"pgvector alone (no store, no filter) recall@10 ef_search={ef}"
            results.add(Metric("pg", f"recall@{loaded}", name, float(np.mean(recalls)), "ratio"))


def run_postgres(
    results: Results,
    args: argparse.Namespace,
    data: Dataset,
    queries: Sequence[Query],
    sizes: Sequence[int],
    primary: str,
    replica: str | None,
) -> None:
    backend = "pg"
    console.rule("PostgreSQL (writes: primary; searches: reader)")
    tag = uuid.uuid4().hex[:8]
    schema, raw_schema = f"bench_{tag}", f"bench_raw_{tag}"
    factory = _pg_factory(args, primary, replica, schema)
    raw_factory = _pg_factory(args, primary, replica, raw_schema)
    raw_factory.dispose()
    try:
        store = Store(factory)
        ingest_n = min(args.ingest_rows, sizes[0])
        raw_seconds = _pg_raw_ingest(primary, raw_schema, data.profiles[:ingest_n], args.batch)
        seconds = _store_load(store, data, 0, ingest_n, args.batch)
        _record_ingest(results, backend, ingest_n, seconds, raw_seconds, "psycopg binary COPY")
        measure_async_ingest(
            results,
            backend,
            lambda tag: _pg_factory(args, primary, replica, f"{schema}_ingest_{tag}"),
            data,
            min(ingest_n, args.pg_async_ingest_rows),
            max(1, args.batch // 5),
        )
        results.notes.append(
            "pg ingest: measured with every index in place (HNSW, GIN, btree); the test cluster "
            f"runs with fsync=off and shared_buffers {args.pg_shared_buffers}"
        )
        # The same raw COPY once more without the HNSW index: what bulk loading can reach.
        _drop_hnsw(primary, raw_schema, ["profiles"])
        more = data.profiles[ingest_n : 2 * ingest_n]
        if more:
            raw_bulk = _pg_raw_ingest(primary, raw_schema, more, args.batch)
            results.add(
                Metric(
                    backend,
                    "ingest",
                    "raw driver: psycopg binary COPY without HNSW (profiles/s)",
                    len(more) / raw_bulk,
                    "/s",
                )
            )
        _pg_exec(primary, f'DROP SCHEMA "{raw_schema}" CASCADE')

        loaded = ingest_n
        fraction = 0.0
        full = len(data.profiles)
        for size in sizes:
            if size > loaded or fraction < size / full:
                _drop_hnsw(primary, schema, HNSW_TABLES)
                bulk = _store_load(store, data, loaded, size, args.batch) if size > loaded else 0.0
                if size > loaded:
                    results.add(
                        Metric(
                            backend,
                            "ingest",
                            f"Store.add_profiles without HNSW, "
                            f"rows {loaded:,}..{size:,} (profiles/s)",
                            (size - loaded) / bulk,
                            "/s",
                        )
                    )
                _load_others(store, data, fraction, size / full, args.batch)
                build = _build_hnsw(primary, schema, HNSW_TABLES, args.pg_maintenance_mem)
                counts = _row_counts(primary, schema)
                results.add(
                    Metric(
                        backend,
                        "ingest",
                        f"HNSW build: profiles ({counts['profiles']:,} rows)",
                        build["profiles"],
                        "s",
                    )
                )
                others = {t: counts[t] for t in HNSW_TABLES if t != "profiles"}
                results.add(
                    Metric(
                        backend,
                        "ingest",
                        f"HNSW build: other tables {others}",
                        sum(v for t, v in build.items() if t != "profiles"),
                        "s",
                        detail={"seconds": build, "rows": counts},
                    )
                )
                loaded, fraction = size, size / full
            _wait_for_replica(primary, replica)
            measure_searches(
                results, backend, store, queries, size, args, _entities(args, size, sizes)
            )
            measure_recall(results, backend, store, data, size, queries, [None, 40, 200, 400])
            _pgvector_recall(results, primary, schema, data, size, queries, [40, 100, 200, 400])
            if size == sizes[-1]:
                measure_async_searches(results, backend, store, queries, size, args)
        measure_postgres_workflow(results, args, factory, primary, replica, schema)
        if not args.no_retention:
            retention_factory = _pg_factory(args, primary, replica, f"{schema}_retention")
            measure_retention(results, backend, retention_factory, args)
            retention_factory.dispose()
    finally:
        factory.dispose()
        if not args.keep_schema:
            extra = ("ingest_sync", "ingest_async", "retention")
            _pg_exec(
                primary,
                ";\n".join(
                    f'DROP SCHEMA IF EXISTS "{name}" CASCADE'
                    for name in (schema, raw_schema, *(f"{schema}_{e}" for e in extra))
                ),
            )


def measure_postgres_workflow(
    results: Results,
    args: argparse.Namespace,
    factory: SessionFactory,
    primary: str,
    replica: str | None,
    schema: str,
) -> None:
    """Workflow state on PostgreSQL with both pooler settings: direct with psycopg's automatic
    prepared statements (REFLEXIO_POSTGRES_POOLER=none), direct without them (=pgbouncer), and
    through a real PgBouncer in transaction mode when the binary is installed."""
    measure_workflow(
        results, "pg", factory, args, raw_target=_psycopg_kwargs(primary), schema=schema
    )
    unprepared = _pg_factory(args, primary, replica, schema, pooler="pgbouncer")
    try:
        measure_workflow(
            results, "pg", unprepared, args, variant=" (POOLER=pgbouncer setting, direct)"
        )
    finally:
        unprepared.dispose()
    from tests.support.pgbouncer import pgbouncer_binary, start_pgbouncer

    if pgbouncer_binary() is None:
        results.notes.append("pgbouncer is not installed: workflow through PgBouncer not measured")
        return
    bouncer = start_pgbouncer(primary, pool_size=4, port=6544)
    behind = SessionFactory.from_config(
        StorageConfigPostgres(db_url=bouncer.url, read_db_url=replica, schema=schema),
        settings=StorageSettings(embedding_dimensions=args.dims, postgres_pooler="pgbouncer"),
    )
    try:
        measure_workflow(
            results, "pg", behind, args, variant=" (through PgBouncer, transaction mode)"
        )
    finally:
        behind.dispose()
        bouncer.stop()


# ------------------------------------------------------------------------------------- large


def run_large_sqlite(results: Results, args: argparse.Namespace, workdir: Path) -> None:
    from benchmarks.bench_large import run_large

    console.rule("SQLite --large")
    path = workdir / "large.db"
    factory = _sqlite_factory(path, args)
    try:
        run_large(results, args, "sqlite", factory, sqlite_path=path)
    finally:
        factory.dispose()


def run_large_postgres(
    results: Results, args: argparse.Namespace, primary: str, replica: str | None
) -> None:
    from benchmarks.bench_large import run_large

    console.rule("PostgreSQL --large")
    schema = f"bench_large_{uuid.uuid4().hex[:8]}"
    factory = _pg_factory(args, primary, replica, schema)
    try:
        run_large(results, args, "pg", factory, primary=primary, replica=replica, schema=schema)
    finally:
        factory.dispose()
        if not args.keep_schema:
            _pg_exec(primary, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


# ------------------------------------------------------------------------------------ report


def _targets_by_suffix(results: Results, suffix: str, bound: float, label: str) -> None:
    """The ≤ target on every metric whose name ends with `suffix` (async/sync ratios)."""
    for m in results.metrics:
        if m.name.endswith(suffix):
            _target(results, m.backend, m.group, m.name, "≤", bound, label)


def apply_targets(results: Results) -> None:
    _target(
        results,
        "sqlite",
        "ingest",
        "Store.add_profiles (profiles/s, with search entries)",
        "≥",
        5000,
        "bulk ingest ≥ 5,000 profiles/s",
    )
    _target(
        results, "sqlite", "ingest", "raw rate / Store rate", "≤", 2.0, "ingest within 2x of raw"
    )
    _target(
        results,
        "pg",
        "ingest",
        "raw rate / Store rate",
        "≤",
        1.25,
        "PG ingest within 1.25x of binary COPY with the same indexes",
    )
    _targets_by_suffix(results, "AsyncStore time / Store time", 1.5, "async within 1.5x")
    _targets_by_suffix(results, "AsyncStore p50 / Store p50", 1.5, "async search within 1.5x")
    for backend, save, load in (("sqlite", 2000, 10000), ("pg", 2500, 5000)):
        _target(
            results,
            backend,
            "workflow",
            "save_state (slower of the two)",
            "≥",
            save,
            f"save_state ≥ {save:,}/s",
        )
        _target(
            results, backend, "workflow", "load_state (/s)", "≥", load, f"load_state ≥ {load:,}/s"
        )
        for m in results.metrics:
            if (
                m.backend == backend
                and m.name.startswith("list_runs(status=...)")
                and (m.name.endswith("Store p95") and "AsyncStore" not in m.name)
            ):
                _target(results, backend, m.group, m.name, "≤", 2.0, "list_runs ≤ 2 ms", on="p50")
            if m.backend == backend and m.group == "retention" and m.name.endswith(" p95"):
                _target(results, backend, m.group, m.name, "≤", 1.0, "retention ≤ 1 ms", on="p50")

    _target(
        results,
        "sqlite",
        "search@20000",
        "profiles hybrid filter=user_id p95",
        "≤",
        5.0,
        "SQLite 20k hybrid user-filtered p95 ≤ 5 ms",
    )
    for mode in MODES:
        _target(
            results,
            "sqlite",
            "search@100000",
            f"profiles {mode} filter=user_id p95",
            "≤",
            10.0,
            f"SQLite 100k {mode} user-filtered p95 ≤ 10 ms",
        )
    _target(
        results,
        "sqlite",
        "search@100000",
        "profiles vector filter=none p95",
        "≤",
        50.0,
        "SQLite 100k unfiltered vector p95 ≤ 50 ms",
    )
    for label in ("user_id", "none"):
        _target(
            results,
            "pg",
            "search@100000",
            f"profiles hybrid filter={label} p95",
            "≤",
            15.0,
            f"PG 100k reader hybrid ({label}) p95 ≤ 15 ms",
        )
        _target(
            results,
            "pg",
            "recall@100000",
            f"profiles vector recall@10 filter={label} ef_search=default",
            "≥",
            0.95,
            f"PG recall@10 ({label}) ≥ 0.95",
        )


def render(results: Results) -> None:
    table = Table(title="reflexio_store benchmark", show_lines=False)
    for name, justify in (
        ("backend", "left"),
        ("group", "left"),
        ("metric", "left"),
        ("value", "right"),
        ("target", "right"),
        ("", "left"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for m in results.metrics:
        if m.name.endswith(" p50"):
            continue  # shown in the JSON; the table keeps p95 (with p50 beside it)
        value = _fmt(m.value, m.unit)
        if m.name.endswith(" p95") and "p50" in m.detail:
            value = f"{m.detail['p50']:.2f} / {m.value:.2f} ms"
        status = "" if m.met is None else ("[green]met[/]" if m.met else "[red]NOT met[/]")
        name = m.name[:-4] + " p50/p95" if m.name.endswith(" p95") else m.name
        table.add_row(m.backend, m.group, name, value, m.target, status)
    console.print(table)
    for note in results.notes:
        console.print(f"[dim]note: {note}[/]")


def markdown(results: Results) -> str:
    lines = ["| backend | group | metric | value | target | |", "|---|---|---|---:|---:|---|"]
    for m in results.metrics:
        if m.name.endswith(" p50"):
            continue
        value = _fmt(m.value, m.unit)
        if m.name.endswith(" p95") and "p50" in m.detail:
            value = f"{m.detail['p50']:.2f} / {m.value:.2f} ms"
        name = m.name[:-4] + " p50/p95" if m.name.endswith(" p95") else m.name
        status = "" if m.met is None else ("met" if m.met else "**NOT met**")
        lines.append(f"| {m.backend} | {m.group} | {name} | {value} | {m.target} | {status} |")
    return "\n".join(lines)


# -------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark reflexio_store on SQLite and PostgreSQL (see the module docstring).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes and fewer queries (about a minute)"
    )
    parser.add_argument(
        "--sizes", default="10000,20000,100000", help="profile counts for SQLite, comma separated"
    )
    parser.add_argument(
        "--pg-sizes", default="10000,100000", help="profile counts for PostgreSQL, comma separated"
    )
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--dims", type=int, default=512)
    parser.add_argument("--queries", type=int, default=100, help="timed queries per case")
    parser.add_argument("--warmup", type=int, default=10, help="untimed queries per case")
    parser.add_argument(
        "--case-budget",
        type=float,
        default=30.0,
        help="seconds one search case may take before it stops early (min 10 timed calls)",
    )
    parser.add_argument("--batch", type=int, default=5000, help="rows per add_profiles call")
    parser.add_argument(
        "--ingest-rows", type=int, default=10000, help="profiles in the ingest-rate measurement"
    )
    parser.add_argument(
        "--ratios",
        default="0.25,0.1,0.02",
        help="interactions,user_playbooks,agent_playbooks per profile",
    )
    parser.add_argument("--workflow-ops", type=int, default=3000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of each workflow rate (median reported)"
    )
    parser.add_argument(
        "--retention-rows",
        type=int,
        default=249_999,
        help="profiles in the retention check's store (the default limit is 250,000)",
    )
    parser.add_argument("--retention-calls", type=int, default=200)
    parser.add_argument("--no-retention", action="store_true")
    parser.add_argument(
        "--pg-async-ingest-rows",
        type=int,
        default=2000,
        help="rows per store in the PostgreSQL Store/AsyncStore ingest comparison (HNSW is slow)",
    )
    parser.add_argument(
        "--all-entities-every-size",
        action="store_true",
        help="measure interactions and playbooks at every size, not only the largest",
    )
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument(
        "--search",
        action="store_true",
        help="only the search benchmark (benchmarks/search_bench.py: SQLite vector index, "
        "PostgreSQL one-statement search, recall, round trips)",
    )
    parser.add_argument("--pg-url", help="an existing PostgreSQL primary (SQLAlchemy URL)")
    parser.add_argument("--pg-read-url", help="its reader (replica); default: the primary")
    parser.add_argument(
        "--pg-maintenance-mem", default="1GB", help="maintenance_work_mem for the HNSW builds"
    )
    parser.add_argument(
        "--pg-shared-buffers",
        default="1GB",
        help="shared_buffers of the PostgreSQL the benchmark starts (the working set fits)",
    )
    parser.add_argument(
        "--keep-schema", action="store_true", help="keep the PostgreSQL benchmark schema"
    )
    parser.add_argument("--out", default="bench-results/bench.json", help="JSON output file")
    parser.add_argument(
        "--large",
        action="store_true",
        help="only the scale curve: profiles loaded to --large-sizes, user-filtered search p95, "
        "ingest rate, size on disk and memory at each size (see benchmarks/bench_large.py)",
    )
    parser.add_argument("--large-sizes", default="10000,100000,1000000")
    parser.add_argument(
        "--large-budget",
        type=float,
        default=3600.0,
        help="seconds of loading per database in --large; the curve stops where it runs out",
    )
    parser.add_argument("--large-chunk", type=int, default=20000, help="rows generated at a time")
    parser.add_argument(
        "--workdir", default="/tmp", help="where SQLite files and a started cluster live"
    )
    args = parser.parse_args(argv)
    if args.quick:
        explicit = {a.split("=")[0] for a in (argv if argv is not None else sys.argv[1:])}
        quick = {
            "--sizes": "2000,5000",
            "--pg-sizes": "2000,5000",
            "--queries": 30,
            "--warmup": 5,
            "--ingest-rows": 2000,
            "--workflow-ops": 500,
            "--batch": 1000,
            "--rounds": 1,
            "--retention-rows": 20000,
            "--retention-calls": 50,
            "--pg-async-ingest-rows": 500,
        }
        for flag, value in quick.items():
            if flag not in explicit:
                setattr(args, flag[2:].replace("-", "_"), value)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.search:
        from benchmarks import search_bench

        return search_bench.main(
            [
                *(["--no-sqlite"] if args.no_sqlite else []),
                *(["--no-pg"] if args.no_pg else []),
                *(["--pg-url", args.pg_url] if args.pg_url else []),
                *(["--pg-read-url", args.pg_read_url] if args.pg_read_url else []),
            ]
        )
    sqlite_sizes = sorted({int(s) for s in str(args.sizes).split(",")})
    pg_sizes = sorted({int(s) for s in str(args.pg_sizes).split(",")})
    started = time.perf_counter()
    results = Results()
    max_size = max(([] if args.no_sqlite else sqlite_sizes) + ([] if args.no_pg else pg_sizes))
    if args.large:
        data, queries = None, []  # the scale curve generates its rows while loading
    else:
        data = build_dataset(args, max_size)
        queries = build_queries(args, data.users)
    workdir = Path(tempfile.mkdtemp(prefix="rxs-bench-", dir=args.workdir))
    cluster = None
    try:
        if not args.no_sqlite:
            if args.large:
                run_large_sqlite(results, args, workdir)
            else:
                run_sqlite(results, args, data, queries, sqlite_sizes, workdir)  # type: ignore[arg-type]
        if not args.no_pg:
            primary, replica = args.pg_url, args.pg_read_url
            if primary is None:
                from tests.support.pg_cluster import start_cluster

                t0 = time.perf_counter()
                # A production server sizes shared_buffers to its working set; the test
                # cluster's 128 MB default is smaller than 100k profiles (about 250 MB).
                cluster = start_cluster(workdir / "pg", {"shared_buffers": args.pg_shared_buffers})
                console.log(
                    f"pg: primary + streaming replica started in {time.perf_counter() - t0:.1f} s"
                )
                primary, replica = cluster.primary_url, cluster.replica_url
            if args.large:
                run_large_postgres(results, args, primary, replica)
            else:
                run_postgres(results, args, data, queries, pg_sizes, primary, replica)  # type: ignore[arg-type]
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if not args.large:
        apply_targets(results)
    elapsed = time.perf_counter() - started
    render(results)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "command": " ".join(
            [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
        ),
        "started_at": datetime.now(UTC).isoformat(),
        "elapsed_seconds": elapsed,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "args": vars(args),
        # Other processes share this 2-core machine: the load average says how noisy it was.
        "load_average_at_end": os.getloadavg(),
        "metrics": [asdict(m) for m in results.metrics],
        "notes": results.notes,
        "markdown": markdown(results),
    }
    out.write_text(json.dumps(payload, indent=2, default=str))
    out.with_suffix(".md").write_text(markdown(results) + "\n")
    console.print(f"wrote {out} and {out.with_suffix('.md')} ({elapsed:.0f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
