"""Spike (not a product feature): would hash-partitioning `profiles` by user_id make user-filtered
search at 1M scale like it does at 100k?

Loads SIZE profiles of the main benchmark's data (50 users) into one migrated schema by binary
COPY (HNSW built after the load), copies them into a second schema whose `profiles` is hash-
partitioned by user_id (PARTITIONS partitions, each with its own HNSW and GIN index), then times
user-filtered hybrid and vector searches through `Store` on both, interleaved round by round, and
measures recall@10 of the user-filtered vector search against an exact scan of the user's rows.
Prints a table and writes JSON.

    .venv/bin/python benchmarks/partition_spike.py --pg-url URL [--size 1000000] [--partitions 16]
        [--reuse]   # keep and reuse the two schemas (spike_one, spike_parts) between runs

The partitioned copy is built by hand here: its primary key becomes (id, user_id) and profile_id
is no longer unique on its own (PostgreSQL wants the partition key in every unique constraint),
which the product's schema would have to decide.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench
from reflexio_store.store import Store

ONE, PARTS = "spike_one", "spike_parts"
COLUMNS = (
    "id, profile_id, user_id, content, custom_features, extractor_names, source, status, "
    "generated_from_request_id, profile_time_to_live, expires_at, last_modified_at, "
    "expanded_terms, tags, embedding, created_at"
)


def _partitioned_copy(primary: str, partitions: int, mem: str) -> dict[str, float]:
    import psycopg

    bench._pg_factory(bench.parse_args([]), primary, None, PARTS).dispose()
    steps = [
        f"ALTER TABLE {PARTS}.profiles RENAME TO profiles_single",
        f"CREATE TABLE {PARTS}.profiles (LIKE {PARTS}.profiles_single INCLUDING DEFAULTS "
        "INCLUDING GENERATED) PARTITION BY HASH (user_id)",
        *(
            f"CREATE TABLE {PARTS}.profiles_p{i} PARTITION OF {PARTS}.profiles "
            f"FOR VALUES WITH (MODULUS {partitions}, REMAINDER {i})"
            for i in range(partitions)
        ),
        f"INSERT INTO {PARTS}.profiles ({COLUMNS}) SELECT {COLUMNS} FROM {ONE}.profiles",
        f"ALTER SEQUENCE {PARTS}.profiles_id_seq OWNED BY NONE",
        f"DROP TABLE {PARTS}.profiles_single",
        f"ALTER TABLE {PARTS}.profiles ADD PRIMARY KEY (id, user_id)",
        f"CREATE INDEX ON {PARTS}.profiles (profile_id)",
        f"CREATE INDEX ix_profiles_user_id_status_created_at ON {PARTS}.profiles "
        "(user_id, status, created_at)",
        f"CREATE INDEX ix_profiles_search_vector ON {PARTS}.profiles USING gin (search_vector) "
        "WITH (fastupdate = off)",
        f"SET maintenance_work_mem = '{mem}'",
        f"CREATE INDEX ix_profiles_embedding_hnsw ON {PARTS}.profiles USING hnsw "
        "(embedding public.vector_cosine_ops) WITH (m = 16, ef_construction = 128)",
        f"VACUUM (ANALYZE) {PARTS}.profiles",
    ]
    took: dict[str, float] = {}
    with psycopg.connect(**bench._psycopg_kwargs(primary), autocommit=True) as conn:
        for sql in steps:
            started = time.perf_counter()
            conn.execute(sql)  # type: ignore[arg-type]
            key = "copy" if sql.startswith("INSERT") else "hnsw" if "hnsw" in sql else None
            if key:
                took[key] = time.perf_counter() - started
    return took


def _load(primary: str, size: int, mem: str) -> dict[str, float]:
    args = bench.parse_args(["--ratios", "0.0001,0.0001,0.0001"])
    data = bench.build_dataset(args, size)
    bench._pg_factory(args, primary, None, ONE).dispose()
    bench._drop_hnsw(primary, ONE, ["profiles"])
    copy = bench._pg_raw_ingest(primary, ONE, data.profiles, 5000)
    hnsw = bench._build_hnsw(primary, ONE, ["profiles"], mem)["profiles"]
    bench._pg_exec(primary, f"VACUUM (ANALYZE) {ONE}.profiles")
    return {"copy": copy, "hnsw": hnsw}


def _timed(store: Store, mode: str, queries: list[bench.Query]) -> list[float]:
    samples = []
    for q in queries:
        kwargs: dict[str, Any] = {"embedding": q.vector, "user_id": q.user, "top_k": 10}
        if mode == "hybrid":
            kwargs["query"] = q.text
        started = time.perf_counter()
        store.search_profiles(mode=mode, **kwargs)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", required=True, help="a PostgreSQL primary with pgvector")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--maintenance-mem", default="4GB")
    parser.add_argument("--reuse", action="store_true", help="use the two schemas if loaded")
    parser.add_argument(
        "--load-only", action="store_true", help=f"load {ONE} and stop (narrow_walk_ab.py uses it)"
    )
    parser.add_argument("--out", default="partition_spike.json")
    ours = parser.parse_args(argv)
    primary = ours.pg_url
    setup: dict[str, Any] = {}
    if not ours.reuse:
        for schema in (ONE, PARTS):
            bench._pg_exec(primary, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        setup["one table"] = _load(primary, ours.size, ours.maintenance_mem)
        if ours.load_only:
            print(f"loaded {ONE}: {setup['one table']}")
            return 0
        setup["partitioned"] = _partitioned_copy(primary, ours.partitions, ours.maintenance_mem)
    args = bench.parse_args(["--queries", str(ours.queries), "--warmup", "20"])
    queries = bench.build_queries(args, [f"user-{i:04d}" for i in range(args.users)])
    stores = {
        "one table": Store(bench._pg_factory(args, primary, None, ONE)),
        "partitioned": Store(bench._pg_factory(args, primary, None, PARTS)),
    }
    for store in stores.values():  # warm-up
        _timed(store, "hybrid", queries[:20])
    rounds: dict[str, list[tuple[float, float]]] = {}
    for _ in range(ours.rounds):
        for mode in ("hybrid", "vector"):
            for name, store in stores.items():
                samples = _timed(store, mode, queries[20:])
                p50, p95 = np.percentile(samples, 50), np.percentile(samples, 95)
                rounds.setdefault(f"{name} {mode}", []).append((float(p50), float(p95)))
    recall = {}
    for name, store in stores.items():
        mean, worst = bench.pg_filtered_recall(primary, ONE, store, queries[20:50])
        recall[name] = {"mean": mean, "min": worst}
    table = bench.Results()
    for key, values in rounds.items():
        p50, p95 = values[-1]
        table.add(bench.Metric("pg", "partition spike", f"{key} p50 (last round)", p50, "ms"))
        table.add(bench.Metric("pg", "partition spike", f"{key} p95 (last round)", p95, "ms"))
    for name, r in recall.items():
        table.add(bench.Metric("pg", "partition spike", f"{name} recall@10", r["mean"], "ratio"))
    bench.render(table)
    Path(ours.out).write_text(json.dumps({"setup_s": setup, "rounds_ms": rounds, "recall": recall}))
    print(f"wrote {ours.out}")
    for store in stores.values():
        store.factory.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
