"""AsyncStore runs SQLite workflow save_state / load_state on the event loop's thread only where
they cannot wait (reflexio_store.inline_sqlite): with real files, real locks held by other
connections, and the real pool."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from reflexio_store import SessionFactory, StorageConfigSQLite
from reflexio_store.engines import sqlite_module
from reflexio_store.inline_sqlite import CHECKPOINT_EVERY
from reflexio_store.settings import StorageSettings
from reflexio_store.store import AsyncStore, Store

POOL = 2
WAIT = 20.0
"""Busy and pool timeout of these tests: a call that waited on the loop would hold it this long."""
PROMPT = 5.0
"""How soon the loop must run the next task: well below WAIT, well above a slow machine's turn."""


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "inline.db"


@pytest.fixture
def factory(path: Path) -> Iterator[SessionFactory]:
    # A long busy timeout: a statement that waited for a lock on the loop would hang the test
    # long enough to fail it, instead of giving up quickly and hiding the wait.
    settings = StorageSettings(pool_size=POOL, pool_acquire_timeout=WAIT)
    made = SessionFactory.from_config(
        StorageConfigSQLite(db_url=f"sqlite:///{path}"), settings=settings
    )
    yield made
    made.dispose()


class _CheckoutThreads:
    """The thread of every checkout from the writer pool, through the pool's own events."""

    def __init__(self, factory: SessionFactory) -> None:
        self.threads: list[int] = []
        event.listen(factory.writer_engine, "checkout", self._out)

    def _out(self, *_: Any) -> None:
        self.threads.append(threading.get_ident())


def _state(step: int = 0, **extra: Any) -> dict[str, Any]:
    return {"status": "running", "current_step_index": step, **extra}


def _lock_holder(path: Path) -> Any:
    """Another connection holding the file's write lock, with a write of its own pending."""
    conn = sqlite_module().connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        "INSERT INTO workflow_runs (run_id, status, current_step_index, total_steps, "
        "pipeline_context, metadata, created_at, updated_at) VALUES ('holder', 'done', 0, 0, "
        "'{}', '{}', '2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
    )
    return conn


async def test_workflow_calls_run_on_the_loop_thread_once_the_schema_is_checked(
    factory: SessionFactory,
) -> None:
    seen = _CheckoutThreads(factory)
    store = AsyncStore(factory)
    loop_thread = threading.get_ident()
    await store.save_state("r1", _state())  # checks the schema: a worker's job
    first = list(seen.threads)
    seen.threads.clear()
    await store.save_state("r1", _state(1))
    loaded = await store.load_state("r1")
    assert loaded is not None and loaded["current_step_index"] == 1
    assert loop_thread not in first
    assert seen.threads == [loop_thread, loop_thread]

    seen.threads.clear()
    await store.list_runs(consistency="strong")  # a session operation: always a worker's
    await AsyncStore(factory, inline_sqlite=False).load_state("r1")
    assert seen.threads and loop_thread not in seen.threads


async def test_a_locked_file_sends_the_write_to_a_worker_while_the_loop_runs_on(
    factory: SessionFactory, path: Path
) -> None:
    store = AsyncStore(factory)
    await store.save_state("warm", _state())
    seen = _CheckoutThreads(factory)
    holder = _lock_holder(path)
    try:
        # Tasks run in the order they were created: the save tries first, finds the lock
        # taken, and must leave the loop free for the task that releases it. Had it waited on
        # the loop, the release could never run and the release would run only after WAIT.
        started = time.monotonic()
        save = asyncio.create_task(store.save_state("blocked", _state(7)))

        async def release() -> tuple[bool, float]:
            done_before = save.done()
            holder.execute("COMMIT")
            return done_before, time.monotonic() - started

        done_before, waited = await asyncio.create_task(release())
        assert not done_before
        assert waited < PROMPT
        await save
    finally:
        holder.close()
    loop_thread = threading.get_ident()
    assert seen.threads[0] == loop_thread  # the inline attempt
    assert loop_thread not in seen.threads[1:]  # then a worker, which waited for the lock
    check = Store(factory)
    saved = check.load_state("blocked")
    assert saved is not None and saved["current_step_index"] == 7
    assert check.load_state("holder") is not None  # the other writer's commit is intact


async def test_reads_run_inline_while_another_connection_holds_the_write_lock(
    factory: SessionFactory, path: Path
) -> None:
    store = AsyncStore(factory)
    await store.save_state("r", _state(3))
    seen = _CheckoutThreads(factory)
    holder = _lock_holder(path)
    try:
        loaded = await store.load_state("r")
        uncommitted = await store.load_state("holder")
    finally:
        holder.rollback() if holder.in_transaction else None
        holder.close()
    assert loaded is not None and loaded["current_step_index"] == 3
    assert uncommitted is None  # the holder's write was never committed
    assert set(seen.threads) == {threading.get_ident()}


async def test_without_an_idle_connection_the_call_waits_on_a_worker(
    factory: SessionFactory,
) -> None:
    store = AsyncStore(factory)
    await store.save_state("r", _state(5))
    pool = factory.writer_engine.pool
    held = [pool.connect() for _ in range(POOL)]  # every pooled connection in use
    seen = _CheckoutThreads(factory)
    started = time.monotonic()
    load = asyncio.create_task(store.load_state("r"))

    async def give_one_back() -> tuple[bool, float]:
        done_before = load.done()
        held.pop().close()
        return done_before, time.monotonic() - started

    try:
        done_before, waited = await asyncio.create_task(give_one_back())
        assert not done_before
        assert waited < PROMPT  # a checkout waiting on the loop would hold it for WAIT
        loaded = await load
    finally:
        for conn in held:
            conn.close()
    assert loaded is not None and loaded["current_step_index"] == 5
    assert seen.threads and threading.get_ident() not in seen.threads


async def test_awaiting_inline_calls_in_a_loop_lets_other_tasks_run(
    factory: SessionFactory,
) -> None:
    store = AsyncStore(factory)
    await store.save_state("r", _state())
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    for step in range(200):
        await store.save_state("r", _state(step))
        assert await store.load_state("r") is not None
    during = ticks
    stop.set()
    await task
    assert during >= 200  # at least one turn of the other task per call


async def test_inline_writes_keep_the_wal_bounded(factory: SessionFactory, path: Path) -> None:
    """Inline writes turn SQLite's autocheckpoint off; their own passive checkpoints must keep
    the WAL from growing with every write (it would be six times larger at the end without)."""
    store = AsyncStore(factory)
    context = {"notes": "x" * 8000}  # a few pages a write
    await store.save_state("warm", _state())

    async def write(first: int, count: int) -> int:
        for i in range(first, first + count):
            await store.save_state(f"r{i}", _state(pipeline_context=context))
        return os.path.getsize(f"{path}-wal")

    early = await write(0, 2 * CHECKPOINT_EVERY)
    late = await write(2 * CHECKPOINT_EVERY, 10 * CHECKPOINT_EVERY)
    assert late <= early * 1.5, (early, late)
    assert len(Store(factory).list_runs(consistency="strong")) == 12 * CHECKPOINT_EVERY + 1
