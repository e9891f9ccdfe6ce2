"""Workflow state for bench.py: save_state / load_state as single calls, Store and AsyncStore side
by side, the raw driver doing the same statements, and list_runs.

Each rate is measured in several rounds (fresh run ids each round) and reported as the median
round, with every round in the JSON detail: the machine is shared, and a round can be slowed by
other processes. AsyncStore is driven the way an asyncio service would call it: one awaited call
after another on one event loop.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from reflexio_store import SessionFactory
from reflexio_store.demo.workload import Workload, WorkloadSize
from reflexio_store.store import AsyncStore, Store
from reflexio_store.store.workflow import STATE_FIELDS

RATE_OPS = ("save_state new run", "save_state update", "load_state")
LIST_RUNS = 2000
LIST_STATUSES = ("bench-listed", "bench-other-1", "bench-other-2")


def _runs(count: int) -> list[dict[str, Any]]:
    runs = list(Workload(WorkloadSize(workflow_runs=count)).workflow_runs())
    tag = uuid.uuid4().hex[:8]
    for run in runs:
        run["run_id"] = f"bench-{tag}-{run['run_id']}"
    return runs


def _updated(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**run, "current_step_index": run["current_step_index"] + 1, "status": "running"}
            for run in runs]  # fmt: skip


def _sync_round(store: Store, count: int) -> dict[str, float]:
    runs = _runs(count)
    rates: dict[str, float] = {}
    for name, batch in (("save_state new run", runs), ("save_state update", _updated(runs))):
        start = time.perf_counter()
        for run in batch:
            store.save_state(run["run_id"], run)
        rates[name] = count / (time.perf_counter() - start)
    order = np.random.default_rng(5).permutation(count)
    start = time.perf_counter()
    for i in order:
        if store.load_state(runs[int(i)]["run_id"]) is None:
            raise RuntimeError("a saved run did not load")
    rates["load_state"] = count / (time.perf_counter() - start)
    return rates


async def _async_round(store: AsyncStore, count: int) -> dict[str, float]:
    runs = _runs(count)
    rates: dict[str, float] = {}
    for name, batch in (("save_state new run", runs), ("save_state update", _updated(runs))):
        start = time.perf_counter()
        for run in batch:
            await store.save_state(run["run_id"], run)
        rates[name] = count / (time.perf_counter() - start)
    order = np.random.default_rng(5).permutation(count)
    start = time.perf_counter()
    for i in order:
        if await store.load_state(runs[int(i)]["run_id"]) is None:
            raise RuntimeError("a saved run did not load")
    rates["load_state"] = count / (time.perf_counter() - start)
    return rates


def _median_rates(rounds: Sequence[dict[str, float]]) -> dict[str, tuple[float, list[float]]]:
    return {op: (statistics.median(r[op] for r in rounds), [r[op] for r in rounds])
            for op in RATE_OPS}  # fmt: skip


def measure_rates(
    factory: SessionFactory, count: int, rounds: int
) -> tuple[dict[str, tuple[float, list[float]]], dict[str, tuple[float, list[float]]]]:
    """(Store rates, AsyncStore rates): op -> (median of rounds, every round), calls/s. The two
    are interleaved round by round, so both see the same background load."""
    store, astore = Store(factory), AsyncStore(factory)
    sync_rounds, async_rounds = [], []
    _sync_round(store, min(count, 200))  # warm the pool and the statement caches
    asyncio.run(_async_round(astore, min(count, 200)))
    for _ in range(rounds):
        sync_rounds.append(_sync_round(store, count))
        async_rounds.append(asyncio.run(_async_round(astore, count)))
    return _median_rates(sync_rounds), _median_rates(async_rounds)


def _latencies(call: Callable[[], Any], calls: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def _alatencies(
    call: Callable[[], Awaitable[Any]], calls: int, warmup: int = 3
) -> list[float]:
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def measure_list_runs(factory: SessionFactory, calls: int) -> dict[str, Any]:
    """list_runs(status=...) returning a third of 2,000 runs, Store and AsyncStore (ms)."""
    store, astore = Store(factory), AsyncStore(factory)
    tag = uuid.uuid4().hex[:8]
    runs = _runs(LIST_RUNS)
    for i, run in enumerate(runs):
        run["status"] = f"{LIST_STATUSES[i % 3]}-{tag}"
        store.save_state(run["run_id"], run)
    status = f"{LIST_STATUSES[0]}-{tag}"
    rows = len(store.list_runs(status=status, consistency="strong"))
    sync = _latencies(lambda: store.list_runs(status=status, consistency="strong"), calls)
    asyn = asyncio.run(
        _alatencies(lambda: astore.list_runs(status=status, consistency="strong"), calls)
    )
    return {"rows": rows, "sync": sync, "async": asyn}


# -- the raw driver doing what save_state / load_state do -------------------------------------


def _sqlite_raw(path: str, runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    from reflexio_store.engines import sqlite_module

    conn = sqlite_module().connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000"):
        conn.execute(f"PRAGMA {pragma}")
    columns = ", ".join(f'"{c}"' for c in STATE_FIELDS)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in STATE_FIELDS[1:] if c != "created_at")
    upsert = (
        f"INSERT INTO workflow_runs ({columns}) VALUES ({', '.join('?' for _ in STATE_FIELDS)}) "
        f"ON CONFLICT (run_id) DO UPDATE SET {updates}"
    )
    select = f"SELECT {columns} FROM workflow_runs WHERE run_id = ?"

    def params(run: dict[str, Any]) -> tuple[Any, ...]:
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        values = {**run, "created_at": now, "updated_at": now}
        for name in ("pipeline_context", "metadata"):
            values[name] = json.dumps(values[name])
        return tuple(values.get(c) for c in STATE_FIELDS)

    def load(run_id: str) -> dict[str, Any]:
        row = conn.execute(select, (run_id,)).fetchone()
        state = dict(zip(STATE_FIELDS, row, strict=True))
        for name in ("pipeline_context", "metadata"):
            state[name] = json.loads(state[name])
        for name in ("created_at", "updated_at"):
            state[name] = datetime.fromisoformat(state[name] + "+00:00")
        return state

    rates = _raw_rates(runs, lambda run: conn.execute(upsert, params(run)), load)
    conn.close()
    return rates


def _pg_raw(
    kwargs: dict[str, Any], schema: str, runs: Sequence[dict[str, Any]]
) -> dict[str, float]:
    import psycopg
    from psycopg.types.json import Jsonb

    columns = ", ".join(f'"{c}"' for c in STATE_FIELDS)
    updates = ", ".join(f'"{c}" = excluded."{c}"' for c in STATE_FIELDS[1:] if c != "created_at")
    upsert = (
        f'INSERT INTO "{schema}".workflow_runs ({columns}) VALUES '
        f"({', '.join('%s' for _ in STATE_FIELDS)}) ON CONFLICT (run_id) DO UPDATE SET {updates}"
    )
    select = f'SELECT {columns} FROM "{schema}".workflow_runs WHERE run_id = %s'
    with psycopg.connect(**kwargs, autocommit=True) as conn:

        def save(run: dict[str, Any]) -> None:
            now = datetime.now(UTC)
            values = {**run, "created_at": now, "updated_at": now}
            for name in ("pipeline_context", "metadata"):
                values[name] = Jsonb(values[name])
            conn.execute(upsert, tuple(values.get(c) for c in STATE_FIELDS))

        def load(run_id: str) -> dict[str, Any]:
            row = conn.execute(select, (run_id,)).fetchone()
            return dict(zip(STATE_FIELDS, row or (), strict=True))

        return _raw_rates(runs, save, load)


def _raw_rates(
    runs: Sequence[dict[str, Any]],
    save: Callable[[dict[str, Any]], Any],
    load: Callable[[str], Any],
) -> dict[str, float]:
    rates: dict[str, float] = {}
    for name, batch in (("save_state new run", runs), ("save_state update", _updated(runs))):
        start = time.perf_counter()
        for run in batch:
            save(run)
        rates[name] = len(batch) / (time.perf_counter() - start)
    start = time.perf_counter()
    for run in runs:
        load(run["run_id"])
    rates["load_state"] = len(runs) / (time.perf_counter() - start)
    return rates


def measure_raw(
    backend: str, target: Any, count: int, rounds: int, schema: str | None = None
) -> dict[str, tuple[float, list[float]]]:
    """The raw driver's rates for the same statements: pysqlite3 (target: the file path) or
    psycopg in autocommit with its automatic prepared statements (target: connect kwargs)."""
    done = []
    for _ in range(rounds):
        runs = _runs(count)
        if backend == "sqlite":
            done.append(_sqlite_raw(str(target), runs))
        else:
            done.append(_pg_raw(target, str(schema), runs))
    return _median_rates(done)
