"""Remembered user sizes on PostgreSQL, A/B: user-filtered searches with the size remembered
(reflexio_store.search.narrow_sizes) against counting the user's rows in every statement.

Runs on a schema loaded by search_bench.py (`--pg-schema S` keeps it), interleaving the two
arms round by round on the same data, after each user of the query set was searched once:

    .venv/bin/python benchmarks/search_bench.py --no-sqlite --pg-url P --pg-read-url R --pg-schema S
    .venv/bin/python benchmarks/narrow_sizes_ab.py --pg-url P --pg-read-url R --pg-schema S

Prints a table of p50 / p95 per round and writes the samples' summary as JSON (--out).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import bench
from rich.console import Console
from rich.table import Table

from reflexio_store.search import narrow_sizes
from reflexio_store.store import Store


def _round(store: Store, queries: list[bench.Query], mode: str, remembered: bool) -> list[float]:
    narrow_sizes.KNOWN_FOR_SECONDS = 30.0 if remembered else -1.0
    narrow_sizes.forget_all()

    def call(q: bench.Query) -> Any:
        kwargs: dict[str, Any] = {"mode": mode, "embedding": q.vector, "user_id": q.user}
        if mode != "vector":
            kwargs["query"] = q.text
        return store.search_profiles(**kwargs)

    seen: set[str] = set()
    for q in queries:  # each user searched once, untimed
        if q.user not in seen:
            seen.add(q.user)
            call(q)
    samples = []
    for q in queries:
        started = time.perf_counter()
        call(q)
        samples.append((time.perf_counter() - started) * 1e3)
    return samples


def _p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pg-url", required=True)
    parser.add_argument("--pg-read-url", required=True)
    parser.add_argument("--pg-schema", required=True, help="a schema loaded by search_bench.py")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="bench-results/narrow_sizes_ab.json")
    ours = parser.parse_args(argv)
    args = bench.parse_args(["--queries", str(ours.queries), "--warmup", "0"])
    factory = bench._pg_factory(args, ours.pg_url, ours.pg_read_url, ours.pg_schema)
    store = Store(factory)
    users = bench.build_dataset(args, 1_000).users  # the same users as the loaded schema's
    queries = bench.build_queries(args, users)[: ours.queries]
    table = Table("mode", "round", "remembered p50 / p95 ms", "counted p50 / p95 ms")
    results: list[dict[str, Any]] = []
    for mode in ("hybrid", "vector"):
        for n in range(ours.rounds):
            counted = _round(store, queries, mode, remembered=False)
            remembered = _round(store, queries, mode, remembered=True)
            row = {
                "mode": mode,
                "round": n,
                "remembered_p50": _p(remembered, 0.5),
                "remembered_p95": _p(remembered, 0.95),
                "counted_p50": _p(counted, 0.5),
                "counted_p95": _p(counted, 0.95),
            }
            results.append(row)
            table.add_row(
                mode,
                str(n),
                f"{row['remembered_p50']:.2f} / {row['remembered_p95']:.2f}",
                f"{row['counted_p50']:.2f} / {row['counted_p95']:.2f}",
            )
    factory.dispose()
    Console().print(table)
    out = Path(ours.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
