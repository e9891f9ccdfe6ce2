"""User-filtered search on PostgreSQL for users above the old exact bound: recall@10 and latency of
the three ways the store has searched them, on one loaded schema, interleaved round by round.

- "walk top_k" (before the eighth session): HNSW walk with the user filter fetching top_k (vector)
  or 2 x top_k (hybrid), users above 5,000 rows;
- "walk 4 x top_k": the walk as now for users above VECTOR_EXACT_ROWS, forced at 5,000 rows;
- "exact": the exact scan of the user's vectors up to VECTOR_EXACT_ROWS (now: 20,000);
- with --user-ordered, "exact, user-ordered": the same on a copy of the table written in user order
  (what `reflexio-store cluster` leaves), swapped in by renaming for its rounds and swapped back.

    .venv/bin/python benchmarks/partition_spike.py --pg-url URL --size 1000000   # loads spike_one
    .venv/bin/python benchmarks/narrow_walk_ab.py --pg-url URL [--schema spike_one] [--user-ordered]

Prints a table and writes JSON. Nothing here is part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench
from benchmarks.partition_spike import _timed
from reflexio_store.search import narrow_sizes
from reflexio_store.search import postgres as pgs
from reflexio_store.search.request import SearchRequest
from reflexio_store.store import Store

OLD_BOUND = 5000
ORDERED = "profiles_user_ordered"


def _old_walk_limit(request: SearchRequest, narrowed: bool) -> int:
    limit = pgs._fetch(request)
    return min(limit, 2 * request.top_k) if narrowed else limit


NEW_WALK_LIMIT = pgs._walk_limit
SETTINGS: dict[str, tuple[Callable[[SearchRequest, bool], int], int]] = {
    "walk top_k (before)": (_old_walk_limit, OLD_BOUND),
    "walk 4 x top_k": (NEW_WALK_LIMIT, OLD_BOUND),
    "exact": (NEW_WALK_LIMIT, pgs.VECTOR_EXACT_ROWS),
}


def _use(name: str) -> None:
    walk, bound = SETTINGS[name.removesuffix(", user-ordered")]
    pgs._walk_limit = walk  # type: ignore[assignment]
    pgs.VECTOR_EXACT_ROWS = bound
    pgs._statements.clear()
    narrow_sizes.forget_all()


def _user_ordered_copy(primary: str, schema: str) -> None:
    q = f'"{schema}"'
    for sql in (
        f"DROP TABLE IF EXISTS {q}.{ORDERED}",
        f"CREATE TABLE {q}.{ORDERED} (LIKE {q}.profiles INCLUDING DEFAULTS)",
        f"ALTER TABLE {q}.{ORDERED} ALTER COLUMN embedding SET STORAGE PLAIN",
        f"INSERT INTO {q}.{ORDERED} SELECT * FROM {q}.profiles "
        "ORDER BY user_id, status, created_at",
        f"CREATE UNIQUE INDEX ON {q}.{ORDERED} (id)",
        f"CREATE INDEX ON {q}.{ORDERED} (user_id, status, created_at)",
        f"CREATE INDEX ON {q}.{ORDERED} USING gin (search_vector) WITH (fastupdate = off)",
        f"VACUUM (ANALYZE) {q}.{ORDERED}",
    ):
        bench._pg_exec(primary, sql)


@contextmanager
def _swapped(primary: str, schema: str) -> Iterator[None]:
    q = f'"{schema}"'
    swap = (
        f"ALTER TABLE {q}.profiles RENAME TO profiles_arrival; "
        f"ALTER TABLE {q}.{ORDERED} RENAME TO profiles"
    )
    back = (
        f"ALTER TABLE {q}.profiles RENAME TO {ORDERED}; "
        f"ALTER TABLE {q}.profiles_arrival RENAME TO profiles"
    )
    bench._pg_exec(primary, f"BEGIN; {swap}; COMMIT")
    try:
        yield
    finally:
        bench._pg_exec(primary, f"BEGIN; {back}; COMMIT")


def _p50_p95(store: Store, mode: str, queries: list[bench.Query]) -> tuple[float, float]:
    samples = _timed(store, mode, queries)
    return float(np.percentile(samples, 50)), float(np.percentile(samples, 95))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", required=True, help="the primary holding the loaded schema")
    parser.add_argument("--schema", default="spike_one")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--recall-queries", type=int, default=60)
    parser.add_argument("--user-ordered", action="store_true")
    parser.add_argument("--out", default="narrow_walk_ab.json")
    ours = parser.parse_args(argv)
    primary, schema = ours.pg_url, ours.schema
    args = bench.parse_args(["--queries", str(ours.queries), "--warmup", "0"])
    queries = bench.build_queries(args, [f"user-{i:04d}" for i in range(args.users)])
    store = Store(bench._pg_factory(args, primary, None, schema))
    names = list(SETTINGS)
    if ours.user_ordered:
        _user_ordered_copy(primary, schema)
        names.append("exact, user-ordered")
    found: dict[str, dict[str, Any]] = {name: {"vector": [], "hybrid": []} for name in names}
    for rnd in range(-1, ours.rounds):  # round -1: recall, and warms each layout
        for name in names:
            _use(name)
            with _swapped(primary, schema) if "user-ordered" in name else _noop():
                if rnd < 0:
                    mean, worst = bench.pg_filtered_recall(
                        primary, schema, store, queries[: ours.recall_queries]
                    )
                    found[name]["recall"] = {"mean": mean, "worst": worst}
                    _timed(store, "vector", queries[:20])
                    continue
                for mode in ("vector", "hybrid"):
                    found[name][mode].append(_p50_p95(store, mode, queries))
    table = bench.Results()
    for name, r in found.items():
        table.add(
            bench.Metric(
                "pg",
                "narrow walk",
                f"{name}: recall@10",
                r["recall"]["mean"],
                "ratio",
                detail={"worst_query": r["recall"]["worst"]},
            )
        )
        for mode in ("vector", "hybrid"):
            p50, p95 = r[mode][-1]
            table.add(
                bench.Metric("pg", "narrow walk", f"{name}: {mode} p50 (last round)", p50, "ms")
            )
            table.add(
                bench.Metric("pg", "narrow walk", f"{name}: {mode} p95 (last round)", p95, "ms")
            )
    bench.render(table)
    Path(ours.out).write_text(json.dumps(found, indent=1))
    print(f"wrote {ours.out}")
    store.factory.dispose()
    return 0


@contextmanager
def _noop() -> Iterator[None]:
    yield


if __name__ == "__main__":
    sys.exit(main())
