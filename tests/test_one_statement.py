"""Single-statement operations (workflow save_state / load_state) run straight on the pooled
driver connection (reflexio_store.one_statement): a failure there must mean what it means on
every other route, and must leave nothing behind in the pool."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import create_engine, delete, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from reflexio_store import SessionFactory
from reflexio_store.models import WorkflowRun
from reflexio_store.store import Store
from tests.conftest import PgEndpoints

SECRET = "state-value-that-must-not-leak"


def _rename_table(factory: SessionFactory, old: str, new: str) -> None:
    schema = factory.storage.schema
    where = f'"{schema}".' if schema else ""
    with factory.writer() as s:
        s.execute(text(f"ALTER TABLE {where}{old} RENAME TO {new}"))


def test_a_failed_statement_hides_its_values_and_leaves_clean_connections(
    factory: SessionFactory,
) -> None:
    store = Store(factory)
    store.save_state("run-1", {"status": "running"})
    _rename_table(factory, "workflow_runs", "workflow_runs_moved")
    try:
        with pytest.raises(DBAPIError) as info:
            store.save_state("run-2", {"status": "running", "metadata": {"token": SECRET}})
        assert "workflow_runs" in str(info.value)
        assert SECRET not in str(info.value) and SECRET not in repr(info.value.params)
        with pytest.raises(DBAPIError):
            store.load_state("run-1")
    finally:
        _rename_table(factory, "workflow_runs_moved", "workflow_runs")
    # The connections those statements used went back to the pool without an open transaction
    # (and on PostgreSQL out of autocommit), so an ORM transaction on them still rolls back.
    engine = factory.writer_engine
    held = [engine.raw_connection() for _ in range(engine.pool.checkedin())]  # type: ignore[attr-defined]
    try:
        assert held
        for fairy in held:
            raw: Any = fairy.dbapi_connection
            if factory.backend == "postgresql":
                assert not raw.autocommit and raw.info.transaction_status == 0  # IDLE
            else:
                assert not raw.in_transaction
    finally:
        for fairy in held:
            fairy.close()
    with pytest.raises(RuntimeError), factory.writer() as s:
        s.execute(delete(WorkflowRun))
        raise RuntimeError("roll back")
    assert store.load_state("run-1") is not None
    assert store.load_state("run-2") is None


def test_a_terminated_backend_is_replaced_before_the_next_statement(
    pg_factory: SessionFactory, pg: PgEndpoints
) -> None:
    store = Store(pg_factory)
    store.save_state("run-1", {"status": "queued"})
    engine = pg_factory.writer_engine
    assert engine.pool.checkedin() == 1, "one pooled connection: the next call must take it"
    fairy = engine.raw_connection()
    pid = fairy.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
    fairy.close()
    admin = create_engine(pg.primary_url, poolclass=NullPool)
    with admin.connect() as conn:
        # Waits (up to 10 s) until the backend has exited.
        assert conn.execute(text("SELECT pg_terminate_backend(:p, 10000)"), {"p": pid}).scalar()
    admin.dispose()
    # The next checkout finds the killed connection (the server wrote to its socket) and
    # replaces it: the caller sees no error.
    for _ in range(3):
        state = store.load_state("run-1")
        assert state is not None and state["status"] == "queued"
    store.save_state("run-1", {"status": "done"})
    assert store.load_state("run-1")["status"] == "done"  # type: ignore[index]


def test_concurrent_saves_and_loads_on_a_small_pool_agree(factory: SessionFactory) -> None:
    """Many threads through the raw path on the shared pool: each save is read back whole."""
    store = Store(factory)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for step in range(40):
                run = f"run-{worker}"
                context = {"worker": worker, "step": step}
                state = {"status": "running", "current_step_index": step}
                store.save_state(run, {**state, "pipeline_context": context})
                loaded = store.load_state(run)
                assert loaded is not None
                assert loaded["current_step_index"] == step
                assert loaded["pipeline_context"] == context
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not [t for t in threads if t.is_alive()], "a worker hung"
    assert not errors, errors[0]


def test_statement_listeners_still_see_every_save_and_load(factory: SessionFactory) -> None:
    """Tracing and logging hook SQLAlchemy's cursor-execute events: an engine with such a
    listener keeps the Core path for single statements, so nothing runs unseen."""
    seen: list[str] = []

    def listener(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if "workflow_runs" in statement:
            seen.append(statement.lstrip().split()[0].upper())

    engine = factory.writer_engine
    event.listen(engine, "before_cursor_execute", listener)
    try:
        store = Store(factory)
        store.save_state("watched", {"status": "running"})
        assert store.load_state("watched") is not None
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert seen == ["INSERT", "SELECT"]


def test_error_listeners_still_see_a_failed_statement(factory: SessionFactory) -> None:
    """A handle_error listener (one that marks pooler errors as disconnects, or reshapes them)
    keeps the Core path too, so it sees the single statements' failures."""
    failures: list[str] = []

    def on_error(context: Any) -> None:
        failures.append(type(context.original_exception).__name__)

    engine = factory.writer_engine
    store = Store(factory)
    store.save_state("run-1", {"status": "running"})
    event.listen(engine, "handle_error", on_error)
    _rename_table(factory, "workflow_runs", "workflow_runs_moved")
    try:
        with pytest.raises(DBAPIError):
            store.load_state("run-1")
    finally:
        _rename_table(factory, "workflow_runs_moved", "workflow_runs")
        event.remove(engine, "handle_error", on_error)
    assert len(failures) == 1
