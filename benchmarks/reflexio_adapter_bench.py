"""Cost of the Reflexio adapter over Store: Reflexio-style add_user_profile + search_user_profile
through ReflexioStoreStorage versus the same work through Store (target: within 1.2x).

    .venv/bin/python benchmarks/reflexio_adapter_bench.py            # SQLite and PostgreSQL
    .venv/bin/python benchmarks/reflexio_adapter_bench.py --no-pg    # SQLite only

Both sides get identical databases (a base of profiles loaded through Store), then run the same
calls in alternating rounds: adds of a few profiles for one user (Reflexio's generation writes a
handful at a time) and user-filtered hybrid searches (query text + embedding, top 10). Embeddings
are computed before timing (the adapter's embedder is a dictionary lookup), so the figures are
the adapter's own cost: model conversion, Reflexio's replace-by-id semantics, and its routes.
Prints a table and writes bench-results/reflexio_adapter.json.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reflexio.models.api_schema.domain import UserProfile
from reflexio.models.api_schema.retriever_schema import SearchUserProfileRequest
from rich.console import Console
from rich.table import Table

from reflexio_store import (
    SessionFactory,
    StorageConfigPostgres,
    StorageConfigSQLite,
    StorageSettings,
)
from reflexio_store.demo.embedder import HashingEmbedder
from reflexio_store.integrations.reflexio import ReflexioStoreStorage
from reflexio_store.store import Store

console = Console()
WORDS = [
    "dark",
    "mode",
    "light",
    "theme",
    "editor",
    "vim",
    "emacs",
    "tea",
    "coffee",
    "morning",
    "evening",
    "travel",
    "flights",
    "hotel",
    "budget",
    "premium",
    "vegan",
    "spicy",
    "sushi",
    "pasta",
    "running",
    "cycling",
    "music",
    "jazz",
    "rock",
    "podcasts",
    "news",
    "python",
    "rust",
    "golang",
    "email",
    "calendar",
    "meetings",
    "remote",
    "office",
    "kids",
    "dog",
    "cat",
    "garden",
    "books",
]
TARGET = 1.2


def sentence(rng: random.Random) -> str:
    return " ".join(rng.sample(WORDS, 6))


class Workload:
    def __init__(self, args: argparse.Namespace) -> None:
        rng = random.Random(args.seed)
        self.users = [f"user-{i}" for i in range(args.users)]
        embedder = HashingEmbedder()
        texts: list[str] = []
        self.base = []
        for i in range(args.base):
            text = sentence(rng)
            texts.append(text)
            self.base.append(
                {
                    "profile_id": f"base-{i}",
                    "user_id": rng.choice(self.users),
                    "content": text,
                    "status": "current",
                }
            )
        self.adds: list[tuple[str, list[str]]] = []
        for _ in range(args.calls):
            batch = [sentence(rng) for _ in range(args.per_call)]
            texts += batch
            self.adds.append((rng.choice(self.users), batch))
        self.searches = [
            (rng.choice(self.users), " ".join(rng.sample(WORDS, 2))) for _ in range(args.searches)
        ]
        texts += [q for _, q in self.searches]
        # What each side embeds: Reflexio embeds a profile as content + "\n" + custom_features.
        keys = texts + [f"{t}\nNone" for t in texts]
        vectors = embedder.embed_many(keys)
        self.vectors = {k: [float(x) for x in v] for k, v in zip(keys, vectors, strict=True)}
        for row in self.base:
            row["embedding"] = self.vectors[row["content"]]
        self.now = int(time.time())

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [self.vectors[t] for t in texts]


def timed(calls: list[Callable[[], Any]]) -> list[float]:
    out = []
    for call in calls:
        t0 = time.perf_counter()
        call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run_backend(
    name: str, make_factory: Callable[[], SessionFactory], w: Workload, args: argparse.Namespace
) -> dict[str, Any]:
    factories = {"store": make_factory(), "adapter": make_factory()}
    store = Store(factories["store"])
    adapter = ReflexioStoreStorage("bench", factory=factories["adapter"], embedder=w.embed)
    for factory in factories.values():
        Store(factory).add_profiles(w.base)
    counter = iter(range(10**9))

    def store_add(user: str, batch: list[str]) -> Callable[[], Any]:
        rows = [
            {
                "profile_id": f"s-{next(counter)}",
                "user_id": user,
                "content": t,
                "status": "current",
                "embedding": w.vectors[f"{t}\nNone"],
            }
            for t in batch
        ]
        return lambda: store.add_profiles(rows)

    def adapter_add(user: str, batch: list[str]) -> Callable[[], Any]:
        profiles = [
            UserProfile(
                profile_id=f"a-{next(counter)}",
                user_id=user,
                content=t,
                last_modified_timestamp=w.now,
                generated_from_request_id="r",
            )
            for t in batch
        ]
        return lambda: adapter.add_user_profile(user, profiles)

    def store_search(user: str, query: str) -> Callable[[], Any]:
        vec = w.vectors[query]
        return lambda: store.search_profiles(query, embedding=vec, user_id=user, top_k=10)

    def adapter_search(user: str, query: str) -> Callable[[], Any]:
        request = SearchUserProfileRequest(user_id=user, query=query, top_k=10)
        vec = w.vectors[query]
        return lambda: adapter.search_user_profile(request, query_embedding=vec)

    samples: dict[str, list[float]] = {
        k: [] for k in ("store_add", "adapter_add", "store_search", "adapter_search")
    }
    rounds = args.rounds
    add_chunks = [w.adds[i::rounds] for i in range(rounds)]
    search_chunks = [w.searches[i::rounds] for i in range(rounds)]
    # Warm both sides (engines, statement caches) before measuring.
    for user, query in w.searches[:20]:
        store_search(user, query)()
        adapter_search(user, query)()
    for r in range(rounds):
        order = ["store", "adapter"] if r % 2 == 0 else ["adapter", "store"]
        for side in order:
            add = store_add if side == "store" else adapter_add
            search = store_search if side == "store" else adapter_search
            samples[f"{side}_add"] += timed([add(u, b) for u, b in add_chunks[r]])
            if name == "pg":
                wait_replica()
            samples[f"{side}_search"] += timed([search(u, q) for u, q in search_chunks[r]])
    for factory in factories.values():
        factory.dispose()

    def mean(key: str) -> float:
        return statistics.fmean(samples[key])

    def p50(key: str) -> float:
        return statistics.median(samples[key])

    result: dict[str, Any] = {"backend": name}
    for op in ("add", "search"):
        result[op] = {
            "store_mean_ms": mean(f"store_{op}"),
            "adapter_mean_ms": mean(f"adapter_{op}"),
            "store_p50_ms": p50(f"store_{op}"),
            "adapter_p50_ms": p50(f"adapter_{op}"),
            "ratio_mean": mean(f"adapter_{op}") / mean(f"store_{op}"),
            "calls": len(samples[f"store_{op}"]),
        }
    total_store = sum(samples["store_add"]) + sum(samples["store_search"])
    total_adapter = sum(samples["adapter_add"]) + sum(samples["adapter_search"])
    result["combined_ratio"] = total_adapter / total_store
    result["met"] = result["combined_ratio"] <= TARGET
    return result


def wait_replica() -> None:
    if _PG["replica"]:
        from tests.support.pg_cluster import wait_for_replay

        wait_for_replay(_PG["primary"], _PG["replica"], 30.0)


_PG: dict[str, str | None] = {"primary": None, "replica": None}


def render(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = Table(
        title=f"Reflexio adapter vs Store ({args.per_call} profiles per add, "
        f"user-filtered hybrid search top 10)"
    )
    for col in ("backend", "operation", "Store mean / p50 ms", "adapter mean / p50 ms", "ratio"):
        table.add_column(col)
    for r in results:
        for op in ("add", "search"):
            m = r[op]
            table.add_row(
                r["backend"],
                f"{op} ({m['calls']} calls)",
                f"{m['store_mean_ms']:.2f} / {m['store_p50_ms']:.2f}",
                f"{m['adapter_mean_ms']:.2f} / {m['adapter_p50_ms']:.2f}",
                f"{m['ratio_mean']:.2f}x",
            )
        table.add_row(
            r["backend"],
            "add + search",
            "",
            "",
            f"{r['combined_ratio']:.2f}x ({'met' if r['met'] else 'NOT met'}, target {TARGET}x)",
        )
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--base", type=int, default=5000, help="profiles loaded before timing")
    parser.add_argument("--calls", type=int, default=400, help="add calls per side")
    parser.add_argument("--per-call", type=int, default=5, help="profiles per add call")
    parser.add_argument("--searches", type=int, default=400, help="searches per side")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-sqlite", action="store_true")
    parser.add_argument("--no-pg", action="store_true")
    parser.add_argument("--out", default="bench-results/reflexio_adapter.json")
    args = parser.parse_args(argv)
    w = Workload(args)
    workdir = Path(tempfile.mkdtemp(prefix="rxs-rxbench-", dir="/tmp"))
    settings = StorageSettings()
    results = []
    cluster = None
    try:
        if not args.no_sqlite:

            def sqlite_factory() -> SessionFactory:
                url = f"sqlite:///{workdir / uuid.uuid4().hex}.db"
                return SessionFactory.from_config(
                    StorageConfigSQLite(db_url=url), settings=settings
                )

            results.append(run_backend("sqlite", sqlite_factory, w, args))
        if not args.no_pg:
            from tests.support.pg_cluster import start_cluster

            cluster = start_cluster(workdir / "pg")
            _PG.update(primary=cluster.primary_url, replica=cluster.replica_url)

            def pg_factory() -> SessionFactory:
                from reflexio_store.migrations import upgrade
                from reflexio_store.settings import resolve_storage

                config = StorageConfigPostgres(
                    db_url=cluster.primary_url,
                    read_db_url=cluster.replica_url,
                    schema=f"rxb_{uuid.uuid4().hex[:8]}",
                )
                upgrade(resolve_storage(config, settings))
                wait_replica()
                return SessionFactory.from_config(config, settings=settings)

            results.append(run_backend("pg", pg_factory, w, args))
    finally:
        if cluster is not None:
            cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    render(results, args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"target": TARGET, "args": vars(args), "results": results}, indent=2))
    console.print(f"wrote {out}")
    return 0 if all(r["met"] for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
