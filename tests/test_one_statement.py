"""Single-statement operations (workflow save_state / load_state) run straight on the pooled
driver connection (reflexio_store.one_statement): a failure there must mean what it means on
every other route, and must leave nothing behind in the pool."""

from __future__ import annotations

import threading
from datetime import UTC
from typing import Any

import hypothesis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine, delete, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from reflexio_store import SessionFactory
from reflexio_store.errors import ValidationError
from reflexio_store.models import WorkflowRun
from reflexio_store.store import Store
from tests.conftest import PgEndpoints
from tests.test_hostile_inputs import datetimes, hostile, json_objects, keys, small_ints, texts

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


def _mostly(valid: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`valid` nine times in ten, so about half the generated states are stored whole."""
    return st.integers(min_value=0, max_value=9).flatmap(lambda n: bad if n == 0 else valid)


_valid_json = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=8).filter(lambda t: "\x00" not in t),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(
    max_examples=150,
    derandomize=True,  # the same examples every run, as the hostile-input suite
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    run_id=_mostly(st.sampled_from(["run-1", "run-2", "語-run", "a b"]), keys),
    status=_mostly(texts, hostile),
    pipeline_id=_mostly(st.one_of(st.none(), texts), hostile),
    step=_mostly(small_ints, st.one_of(hostile, st.sampled_from([2**31 - 1, 2**31, -1]))),
    context=_mostly(st.dictionaries(st.text(max_size=5), _valid_json, max_size=3), json_objects),
    metadata=_mostly(st.dictionaries(st.text(max_size=5), _valid_json, max_size=3), hostile),
    updated_at=_mostly(st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))), datetimes),
)
def test_hostile_states_through_the_driver_path_only_raise_our_errors(
    factory: SessionFactory,
    run_id: Any,
    status: Any,
    pipeline_id: Any,
    step: Any,
    context: Any,
    metadata: Any,
    updated_at: Any,
) -> None:
    """Generated states straight through the driver path (no listener on the engine): a state is
    refused with ValidationError, or stored and read back as given; never a driver error, and
    a refused save writes nothing."""
    store = Store(factory)
    state = {
        "status": status,
        "pipeline_id": pipeline_id,
        "current_step_index": step,
        "pipeline_context": context,
        "metadata": metadata,
        "updated_at": updated_at,
    }
    try:
        existed = store.load_state(run_id) is not None
    except ValidationError:
        hypothesis.event("run id refused")
        return  # the run id itself is refused: nothing else to check
    try:
        store.save_state(run_id, state)
    except ValidationError:
        loaded = store.load_state(run_id)
        hypothesis.event("state refused")
        assert existed or loaded is None, "a refused save wrote a row"
        return
    hypothesis.event("stored")
    loaded = store.load_state(run_id)
    assert loaded is not None
    assert loaded["status"] == status and loaded["pipeline_id"] == pipeline_id
    assert loaded["current_step_index"] == (0 if step is None else step)  # 0: the default
    assert loaded["pipeline_context"] == (context or {})
    assert loaded["metadata"] == (metadata or {})
    if updated_at is not None:
        assert loaded["updated_at"] == updated_at


def test_large_floats_in_json_come_back_as_floats(factory: SessionFactory) -> None:
    """PostgreSQL's jsonb keeps numbers as numeric: a float of 1e16 or more would come back as
    an int of another value unless written with its exact digits (reflexio_store.json_text).
    Through workflow state (the driver path), profiles added one by one and by binary COPY
    (16 or more), and a containment filter."""
    big = {"x": 6.612535458209402e16, "list": [1e300, -2.5e16, 0.1, 1e-7], "text": "e+ 1e16"}
    store = Store(factory)
    store.save_state("run-1", {"status": "running", "metadata": big, "pipeline_context": big})
    loaded = store.load_state("run-1")
    assert loaded is not None
    for field in ("metadata", "pipeline_context"):
        assert loaded[field] == big
        assert type(loaded[field]["x"]) is float
    assert [r["run_id"] for r in store.list_runs(metadata_filter={"x": 6.612535458209402e16},
                                                 consistency="strong")] == ["run-1"]  # fmt: skip
    for count in (1, 20):
        rows = [{"user_id": f"u{count}", "content": "c", "custom_features": big}] * count
        store.add_profiles(rows)
        listed = store.list_profiles(user_id=f"u{count}", consistency="strong", status=None)
        assert len(listed) == count
        assert all(p.custom_features == big for p in listed)
        assert all(type(p.custom_features["x"]) is float for p in listed)  # type: ignore[index]
