"""AsyncStore runs SQLite workflow save_state / load_state on the event loop's thread only where
they cannot wait (reflexio_store.inline_sqlite): with real files, real locks held by other
connections, and the real pool."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import event as count_outcome
from hypothesis import strategies as st
from sqlalchemy import event

from reflexio_store import SessionFactory, StorageConfigSQLite, inline_sqlite, sessions
from reflexio_store.engine_registry import registry
from reflexio_store.engines import sqlite_module
from reflexio_store.inline_sqlite import AUTOCHECKPOINT_PAGES, BACK_OFF_CALLS, CHECKPOINT_EVERY
from reflexio_store.settings import StorageSettings
from reflexio_store.store import AsyncStore, Store

POOL = 2
WAIT = 20.0
"""Busy and pool timeout of these tests: a call that waited on the loop would hold it this long."""
PROMPT = 5.0
"""How soon the loop must run the next task: well below WAIT, well above a slow machine's turn."""


@pytest.fixture(autouse=True)
def _no_back_off_from_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy machine can pause any call past inline_sqlite.SLOW_SECONDS; only the test of the
    back-off itself keeps the real bound."""
    monkeypatch.setattr(inline_sqlite, "SLOW_SECONDS", 60.0)


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
    await asyncio.sleep(0)  # the ticker's first turn
    stalled = []
    for step in range(CHECKPOINT_EVERY // 2):  # below the count: no checkpoint's await helps
        before = ticks
        await store.save_state("r", _state(step))
        after_save = ticks
        await store.load_state("r")
        if not before < after_save < ticks:
            stalled.append(step)
    stop.set()
    await task
    assert stalled == []  # the other task ran during every single call


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


def _pooled_settings(factory: SessionFactory) -> list[tuple[int, int]]:
    """(busy_timeout, wal_autocheckpoint) of every connection in the pool, all held at once."""
    pool = factory.writer_engine.pool
    held = [pool.connect() for _ in range(POOL)]
    try:
        return [
            (
                conn.dbapi_connection.execute("PRAGMA busy_timeout").fetchone()[0],  # type: ignore[union-attr]
                conn.dbapi_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0],  # type: ignore[union-attr]
            )
            for conn in held
        ]
    finally:
        for conn in held:
            conn.close()


async def test_an_inline_commit_never_copies_the_wal_into_the_file(
    factory: SessionFactory, path: Path
) -> None:
    """SQLite's autocheckpoint would copy a WAL of 1,000 pages or more into the database file
    at the next commit. An inline commit must leave that to a worker: the file keeps its size
    until the checkpoint after CHECKPOINT_EVERY writes. Afterwards every pooled connection has
    its own settings again."""
    store = AsyncStore(factory)
    await store.save_state("warm", _state())  # schema checked; WAL mode on
    await store.save_state("warm", _state(1))  # inline from here on
    other = sqlite_module().connect(str(path), isolation_level=None)
    other.execute("PRAGMA wal_autocheckpoint = 0")
    other.execute("CREATE TABLE filler (x BLOB)")
    other.executemany("INSERT INTO filler VALUES (?)", [(b"f" * 3000,) for _ in range(1500)])
    other.close()
    size = os.path.getsize(path)
    for step in range(CHECKPOINT_EVERY - 2):  # the count so far: 1 inline write
        await store.save_state("r", _state(step))
    assert os.path.getsize(path) == size  # nothing copied on the loop
    await store.save_state("r", _state(CHECKPOINT_EVERY))  # the 100th: its checkpoint runs
    assert os.path.getsize(path) > size + 1500 * 3000
    busy_ms = int(WAIT * 1000)
    assert _pooled_settings(factory) == [(busy_ms, AUTOCHECKPOINT_PAGES)] * POOL


@pytest.mark.parametrize("soft", [False, True], ids=["closed", "soft-invalidated"])
async def test_an_invalidated_connection_is_reopened_on_a_worker_not_on_the_loop(
    factory: SessionFactory, soft: bool
) -> None:
    store = AsyncStore(factory)
    await store.save_state("r", _state(2))
    pool = factory.writer_engine.pool
    held = [pool.connect() for _ in range(POOL)]
    held[1].close()
    # Returned to the pool last, so the next checkout takes its record, for which checkout
    # would open a new connection (closed now, or marked to be replaced at its next use).
    held[0].invalidate(soft=soft)
    held[0].close()
    opened: list[int] = []
    event.listen(pool, "connect", lambda *_: opened.append(threading.get_ident()))
    seen = _CheckoutThreads(factory)
    for _ in range(3):
        loaded = await store.load_state("r")
        assert loaded is not None and loaded["current_step_index"] == 2
    loop_thread = threading.get_ident()
    assert len(opened) == 1 and opened[0] != loop_thread  # reopened once, by a worker
    assert seen.threads[0] == opened[0]
    assert seen.threads[1:] == [loop_thread, loop_thread]  # inline again afterwards


async def test_an_inline_call_never_closes_other_files_on_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With one open file allowed, using a second file closes the first (the registry's least
    recently used); that close (a checkpoint of its WAL) must happen on a worker thread."""
    monkeypatch.setattr(registry, "max_open_sqlite", registry.max_open_sqlite)  # restored after
    settings = StorageSettings(pool_size=POOL, sqlite_max_open_databases=1)

    def make(name: str) -> SessionFactory:
        config = StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / name}")
        return SessionFactory.from_config(config, settings=settings)

    first, second = make("a.db"), make("b.db")
    try:
        await AsyncStore(second).save_state("b", _state())
        held = second.writer_engine.pool.connect()  # in use: the next use of a cannot close b
        Store(first).save_state("a", _state())
        held.close()  # b idle again, both files open, one allowed
        closed: list[int] = []
        event.listen(
            first.writer_engine.pool, "close", lambda *_: closed.append(threading.get_ident())
        )
        loaded = await AsyncStore(second).load_state("b")
        assert loaded is not None
        assert closed == []  # the inline call left the file open beyond the bound
        # A full touch on another thread (Store's route) closes a: the bound holds again.
        await asyncio.to_thread(Store(second).load_state, "b")
        assert closed and threading.get_ident() not in closed
    finally:
        first.dispose()
        second.dispose()


async def test_a_slow_inline_call_sends_the_next_calls_to_workers(
    factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inline_sqlite, "SLOW_SECONDS", 0.002)
    store = AsyncStore(factory)
    await store.save_state("r", _state())
    seen = _CheckoutThreads(factory)
    big = {"notes": "x" * 3_000_000}  # encoding and writing it takes far longer than 2 ms
    await store.save_state("r", _state(1, pipeline_context=big))
    for step in range(BACK_OFF_CALLS):
        await store.save_state("r", _state(step))
    loaded = await store.load_state("r")  # another operation keeps its own record
    loop_thread = threading.get_ident()
    assert seen.threads[0] == loop_thread  # the slow call itself ran inline
    assert loop_thread not in seen.threads[1 : 1 + BACK_OFF_CALLS]
    assert seen.threads[1 + BACK_OFF_CALLS] == loop_thread  # load_state
    assert loaded is not None and loaded["current_step_index"] == BACK_OFF_CALLS - 1
    seen.threads.clear()
    await store.save_state("r", _state())
    assert seen.threads == [loop_thread]  # the back-off is over


async def test_an_in_memory_database_is_never_used_inline() -> None:
    factory = SessionFactory.from_config(
        StorageConfigSQLite(db_url="sqlite:///:memory:"), settings=StorageSettings()
    )
    try:
        store = AsyncStore(factory)
        await store.save_state("r", _state(4))
        seen = _CheckoutThreads(factory)
        loaded = await store.load_state("r")
        assert loaded is not None and loaded["current_step_index"] == 4
        assert seen.threads and threading.get_ident() not in seen.threads
    finally:
        factory.dispose()


class _Interrupt(BaseException):
    """Not an Exception, like KeyboardInterrupt (which would stop the test run itself)."""


class _ExplodingState(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise _Interrupt

    def __len__(self) -> int:
        return 1


async def test_an_interrupted_inline_call_gives_the_connection_back_as_it_found_it(
    factory: SessionFactory,
) -> None:
    store = AsyncStore(factory)
    await store.save_state("r", _state())
    seen = _CheckoutThreads(factory)
    with pytest.raises(_Interrupt):
        await store.save_state("r", _ExplodingState())
    assert seen.threads == [threading.get_ident()]  # it was interrupted inline
    assert _pooled_settings(factory) == [(int(WAIT * 1000), AUTOCHECKPOINT_PAGES)] * POOL
    saved = await store.load_state("r")
    assert saved is not None and saved["current_step_index"] == 0


async def test_an_interrupt_right_after_the_settings_changed_still_restores_them(
    factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupt (a second Ctrl-C) can land anywhere on the loop's thread; here at the
    moment busy_timeout and autocheckpoint were just turned off, before the statement."""
    store = AsyncStore(factory)
    await store.save_state("r", _state())
    real = inline_sqlite._stop_waiting

    def interrupted(*args: Any) -> None:
        real(*args)
        raise _Interrupt

    monkeypatch.setattr(inline_sqlite, "_stop_waiting", interrupted)
    with pytest.raises(_Interrupt):
        await store.save_state("r", _state(9))
    monkeypatch.undo()
    assert _pooled_settings(factory) == [(int(WAIT * 1000), AUTOCHECKPOINT_PAGES)] * POOL
    saved = await store.load_state("r")
    assert saved is not None and saved["current_step_index"] == 0  # nothing was written


class _InterruptingNumber:
    """A remembered busy timeout whose conversion is interrupted: the restore stops half way."""

    def __int__(self) -> int:
        raise _Interrupt


async def test_a_connection_whose_restore_was_interrupted_is_closed_not_pooled(
    factory: SessionFactory,
) -> None:
    store = AsyncStore(factory)
    await store.save_state("r", _state())
    pool = factory.writer_engine.pool
    held = [pool.connect() for _ in range(POOL)]
    for conn in held:
        conn.info[inline_sqlite._BUSY_TIMEOUT_INFO] = _InterruptingNumber()
        conn.close()
    with pytest.raises(_Interrupt):
        await store.save_state("r", _state(3))  # busy_timeout 0 now, and its restore fails
    for conn in [pool.connect() for _ in range(POOL)]:
        conn.info.pop(inline_sqlite._BUSY_TIMEOUT_INFO, None)
        conn.close()
    # The interrupted connection was closed; its replacement starts with the engine's settings.
    assert _pooled_settings(factory) == [(int(WAIT * 1000), AUTOCHECKPOINT_PAGES)] * POOL


async def test_an_inline_call_never_waits_for_the_registry_of_open_files(
    factory: SessionFactory,
) -> None:
    store = AsyncStore(factory)
    await store.save_state("r", _state(6))
    taken, release = threading.Event(), threading.Event()

    def hold_registry() -> None:
        with registry._lock:
            taken.set()
            release.wait(WAIT)

    holder = threading.Thread(target=hold_registry)
    holder.start()
    try:
        taken.wait()
        started = time.monotonic()
        load = asyncio.create_task(store.load_state("r"))

        async def let_go() -> tuple[bool, float]:
            done_before = load.done()
            release.set()
            return done_before, time.monotonic() - started

        done_before, waited = await asyncio.create_task(let_go())
        loaded = await load
    finally:
        release.set()
        holder.join()
    assert not done_before
    assert waited < PROMPT  # an inline call waiting for the lock would hold the loop for WAIT
    assert loaded is not None and loaded["current_step_index"] == 6


async def test_after_dispose_the_engine_is_built_again_on_a_worker(
    factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AsyncStore(factory)
    await store.save_state("r", _state(8))
    factory.dispose()  # the schema stays checked; the engine is given back
    built: list[int] = []
    real = sessions._sqlite_engine

    def recording(*args: Any) -> Any:
        built.append(threading.get_ident())
        return real(*args)

    monkeypatch.setattr(sessions, "_sqlite_engine", recording)
    loaded = await store.load_state("r")
    assert loaded is not None and loaded["current_step_index"] == 8
    assert built and threading.get_ident() not in built


_hostile_values = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.text(alphabet=st.sampled_from(["\x00", "'", '"', ";", "\ud800", "é", " "]), max_size=4),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(),
    st.booleans(),
    st.binary(max_size=4),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers() | st.text(max_size=3), max_size=2),
)
_names = st.text(alphabet="abcXYZ09-_.:é", min_size=1, max_size=8)
_nearly_valid_states = st.fixed_dictionaries(
    {"status": _names},
    optional={
        "current_step_index": st.integers(min_value=-1, max_value=2**31),
        "pipeline_context": st.dictionaries(_names, st.integers() | st.floats() | _names,
                                            max_size=3),
        "metadata": st.dictionaries(_names, st.lists(_names, max_size=2), max_size=2),
        "pipeline_id": _names,
    },
)  # fmt: skip


def _mostly(usual: Any, hostile: Any) -> Any:
    """`usual` three times in four (one_of would flatten `hostile`'s branches and drown it)."""
    return st.integers(0, 3).flatmap(lambda pick: hostile if pick == 0 else usual)


_hostile_states = _mostly(
    _nearly_valid_states,
    st.one_of(
        _hostile_values,
        st.dictionaries(
            st.sampled_from(["status", "current_step_index", "total_steps", "pipeline_context",
                             "metadata", "pipeline_id", "created_at", "run_id", "bogus"]),
            _hostile_values,
            max_size=4,
        ),
    ),
)  # fmt: skip


def _outcome(call: Any) -> Any:
    try:
        return ("ok", call())
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(run_id=_mostly(_names, _hostile_values), state=_hostile_states)
def test_hostile_arguments_meet_the_same_answer_inline_as_through_store(
    factory: SessionFactory, run_id: Any, state: Any
) -> None:
    """The inline route is a second way into save_state / load_state: the same refusal (our
    own error, the same message) or the same stored state as Store's route, and every pooled
    connection keeps its settings whatever was refused."""
    store, inline = Store(factory), AsyncStore(factory)
    asyncio.run(inline.save_state("warm", _state()))  # schema checked: calls below run inline

    def inline_save() -> Any:
        asyncio.run(inline.save_state(run_id, state))
        return asyncio.run(inline.load_state(run_id))

    def store_save() -> Any:
        store.save_state(run_id, state)
        return store.load_state(run_id)

    got = _outcome(inline_save)
    if got[0] == "ok":
        store.delete_state(run_id)
    expected = _outcome(store_save)
    if got[0] == "ok" and expected[0] == "ok":
        for saved in (got[1], expected[1]):  # written at different moments
            saved.pop("created_at"), saved.pop("updated_at")
    count_outcome(got[0])
    assert got == expected
    assert got[0] in ("ok", "ValidationError"), got
    assert _pooled_settings(factory) == [(int(WAIT * 1000), AUTOCHECKPOINT_PAGES)] * POOL
