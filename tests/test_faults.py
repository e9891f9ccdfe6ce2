"""The fault suite: real servers stopped and killed under load, real processes killed mid-write.

These tests stop, kill and restart servers, so they run on a PostgreSQL primary + replica of their
own (never the session-wide cluster other tests share). Every wait is on a real condition with a
deadline. Each test prints its measured figures (run with `-s` to see them; README quotes them).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from reflexio_store import SessionFactory, StorageConfigPostgres, StorageConfigSQLite
from reflexio_store.enums import Status
from reflexio_store.errors import PoolTimeoutError
from reflexio_store.migrations import upgrade
from reflexio_store.replicas import reset_health
from reflexio_store.settings import StorageSettings, resolve_storage
from reflexio_store.store import Store
from tests.support.pg_cluster import PgCluster, start_cluster

DEADLINE = 30.0  # seconds: the most any single wait of this module may take


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> float:
    """Poll `condition` until true; return the seconds it took. Fails the test at the deadline."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.005)  # polling a real condition, bounded by the deadline
    return time.monotonic() - start


def report(name: str, **figures: Any) -> None:
    print(f"\n[fault] {name}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    base = Path(tempfile.mkdtemp(prefix="rxs-ft-", dir="/tmp"))
    own = start_cluster(base)
    try:
        yield own
    finally:
        own.stop()


@pytest.fixture(autouse=True)
def _fresh_health() -> Iterator[None]:
    """Replica health is per process: no test here leaves a replica marked down for others."""
    reset_health()
    yield
    reset_health()


def migrated(cluster: PgCluster, **config: Any) -> StorageConfigPostgres:
    """A new schema on the fault cluster, migrated, and a config reading from its replica."""
    schema = f"f_{uuid.uuid4().hex[:10]}"
    cfg = StorageConfigPostgres(
        db_url=cluster.primary_url, read_db_url=cluster.replica_url, schema=schema, **config
    )
    upgrade(resolve_storage(cfg, StorageSettings()))
    cluster.wait_for_replica(DEADLINE)
    return cfg


def vec(seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.random() for _ in range(512)]


class Loop:
    """Threads running `step` until stopped; counts successes and failures by type."""

    def __init__(self, step: Callable[[int], None], threads: int, fail_fast: bool = True) -> None:
        self.fail_fast = fail_fast
        self.ok = 0
        self.failures: Counter[str] = Counter()
        self.examples: dict[str, str] = {}
        self._step = step
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(threads)]

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                self._step(index)
            except Exception as exc:
                with self._lock:
                    self.failures[type(exc).__name__] += 1
                    self.examples.setdefault(type(exc).__name__, str(exc)[:300])
            else:
                with self._lock:
                    self.ok += 1

    def __enter__(self) -> Loop:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(DEADLINE)
        assert not any(t.is_alive() for t in self._threads), "a worker thread hung"

    def more(self, count: int) -> Callable[[], bool]:
        target = self.ok + count

        def reached() -> bool:
            if self.failures and self.fail_fast:
                raise AssertionError(f"operations failed: {self.failures} {self.examples}")
            return self.ok >= target

        return reached


def test_replica_stopped_and_restarted_under_searches_fails_no_search(cluster: PgCluster) -> None:
    cfg = migrated(cluster)
    factory = SessionFactory.from_config(cfg, settings=StorageSettings())
    store = Store(factory)
    store.add_profiles(
        [{"user_id": f"u{i % 4}", "content": f"dark mode note {i}", "embedding": vec(i),
              "status": Status.CURRENT}
         for i in range(40)]
    )  # fmt: skip
    cluster.wait_for_replica(DEADLINE)

    def search(i: int) -> None:
        hits = store.search_profiles("dark mode", embedding=vec(i), top_k=5)
        assert len(hits) == 5, hits

    (replica,) = factory.replicas.replicas
    with Loop(search, threads=8) as loop:
        wait_until(loop.more(50), "50 searches before the outage")
        stopped = time.monotonic()
        cluster.stop_node(cluster.replica, "immediate")
        down_after = wait_until(lambda: replica.health.state == "down", "the replica marked down")
        wait_until(loop.more(100), "100 searches while the replica is down")
        during = loop.ok
        cluster.start_node(cluster.replica)
        restarted = time.monotonic()
        wait_until(lambda: replica.health.state == "up", "the replica back in use")
        back_after = time.monotonic() - restarted
        wait_until(loop.more(50), "50 searches after the replica came back")
    report(
        "replica stop -m immediate under 8 searching threads",
        searches=loop.ok,
        failed=sum(loop.failures.values()),
        marked_down_after_s=f"{down_after:.2f}",
        replica_back_in_use_after_restart_s=f"{back_after:.2f}",
        outage_s=f"{restarted - stopped:.2f}",
        searches_before_restart=during,
    )
    assert not loop.failures, (loop.failures, loop.examples)
    factory.dispose()


def test_replica_lag_bound_skips_a_replica_behind(cluster: PgCluster) -> None:
    cfg = migrated(cluster, read_max_lag_ms=200)
    factory = SessionFactory.from_config(cfg, settings=StorageSettings())
    store = Store(factory)
    (replica,) = factory.replicas.replicas

    def served_by_replica() -> bool:
        with factory.reader() as session:
            return bool(session.execute(text("SELECT pg_is_in_recovery()")).scalar())

    wait_until(served_by_replica, "an idle, caught-up replica to serve reads")
    with cluster.replica.connect() as admin:
        admin.execute("SELECT pg_wal_replay_pause()")
        try:
            store.add_profiles([{"user_id": "u", "content": "written while replay is paused"}])
            behind = wait_until(lambda: not served_by_replica(), "reads to skip the paused replica")
            assert replica.health.lag_ms is not None and replica.health.lag_ms > 200
            assert replica.health.state == "up"  # behind, not down
            ids = [p.content for p in store.list_profiles(user_id="u")]
            assert ids == ["written while replay is paused"]  # eventual read, from the primary
        finally:
            admin.execute("SELECT pg_wal_replay_resume()")
    caught_up = wait_until(served_by_replica, "the replica to serve reads after catching up")
    report("replica lag bound 200 ms", skipped_after_s=f"{behind:.2f}",
           back_after_resume_s=f"{caught_up:.2f}")  # fmt: skip
    factory.dispose()


def test_a_migration_the_replica_has_not_replayed_is_read_from_the_primary(
    cluster: PgCluster, caplog: pytest.LogCaptureFixture
) -> None:
    """A new organization's schema, migrated while the replica's replay is paused: its reads
    run on the primary (the replica is behind, not broken) instead of failing with the
    replica's 'relation does not exist'."""
    schema = f"f_{uuid.uuid4().hex[:10]}"
    cfg = StorageConfigPostgres(
        db_url=cluster.primary_url, read_db_url=cluster.replica_url, schema=schema
    )
    with cluster.replica.connect() as admin:
        admin.execute("SELECT pg_wal_replay_pause()")
        try:
            upgrade(resolve_storage(cfg, StorageSettings()))
            factory = SessionFactory.from_config(cfg, settings=StorageSettings())
            store = Store(factory)
            store.add_profiles([{"user_id": "u", "content": "drinks coffee, written unreplayed"}])
            with factory.reader() as session:  # the replica really lacks the schema
                assert session.execute(text("SELECT pg_is_in_recovery()")).scalar()
                assert not session.execute(
                    text("SELECT 1 FROM pg_namespace WHERE nspname = :s"), {"s": schema}
                ).first()
            for _ in range(2):
                listed = [p.content for p in store.list_profiles(user_id="u")]
                assert listed == ["drinks coffee, written unreplayed"]
                assert store.search_profiles("coffee", mode="text", user_id="u", status=None)
            (replica,) = factory.replicas.replicas
            assert replica.health.state == "up"  # behind, not down
        finally:
            admin.execute("SELECT pg_wal_replay_resume()")
    warnings = [r for r in caplog.records if "replays the migration" in r.getMessage()]
    assert len(warnings) == 1, "one warning per replica and missing kind, not one per read"
    cluster.wait_for_replica(DEADLINE)
    factory.dispose()


@pytest.mark.parametrize("operation", ["add_profiles", "save_state"])
def test_primary_killed_under_writes_loses_no_acknowledged_row(
    cluster: PgCluster, operation: str
) -> None:
    """add_profiles runs in an ORM session; save_state is one autocommit statement straight on
    the pooled psycopg connection (reflexio_store.one_statement): both must fail only with
    DatabaseUnavailableError and lose nothing they acknowledged."""
    cfg = migrated(cluster)
    factory = SessionFactory.from_config(cfg, settings=StorageSettings())
    store = Store(factory)
    acknowledged: list[str] = []
    counter = iter(range(10**9))

    def write(_i: int) -> None:
        n = next(counter)
        if operation == "save_state":
            store.save_state(f"run-{n}", {"status": "running", "current_step_index": n})
            acknowledged.append(f"run-{n}")
            return
        (profile_id,) = store.add_profiles([{"user_id": "w", "content": f"row {n}"}])
        acknowledged.append(profile_id)

    with Loop(write, threads=2, fail_fast=False) as loop:
        wait_until(loop.more(50), "50 acknowledged writes before the kill")
        cluster.kill_node(cluster.primary)
        killed = time.monotonic()
        wait_until(lambda: loop.failures["DatabaseUnavailableError"] > 0, "the outage error")
        cluster.start_node(cluster.primary)  # crash recovery, then accepting connections
        restarted = time.monotonic()
        wait_until(loop.more(1), "the first write after the restart")
        recovered = time.monotonic() - restarted
        wait_until(loop.more(50), "50 writes after the restart")
    if operation == "save_state":
        lost = [run for run in acknowledged if store.load_state(run) is None]
    else:
        stored = {p.profile_id for p in store.list_profiles(user_id="w", consistency="strong",
                                                            limit=10000)}  # fmt: skip
        lost = [pid for pid in acknowledged if pid not in stored]
    report(
        f"primary kill -9 under 2 threads writing with {operation}",
        acknowledged=len(acknowledged),
        lost=len(lost),
        unavailable_errors=loop.failures["DatabaseUnavailableError"],
        outage_s=f"{restarted - killed:.2f}",
        first_write_after_restart_s=f"{recovered:.2f}",
    )
    assert not lost
    assert set(loop.failures) == {"DatabaseUnavailableError"}, loop.examples
    assert "unavailable" in loop.examples["DatabaseUnavailableError"]
    assert len(acknowledged) == len(set(acknowledged))
    factory.dispose()
    cluster.wait_for_replica(DEADLINE)  # the replica reconnects to the restarted primary


def test_200_threads_on_pools_of_5_and_5_stay_within_bounds(cluster: PgCluster) -> None:
    cfg = migrated(cluster, pool_size=5, read_pool_size=5, pool_acquire_timeout=1.0)
    factory = SessionFactory.from_config(cfg, settings=StorageSettings())
    store = Store(factory)
    store.add_profiles(
        [{"user_id": "u", "content": f"pool note {i}", "status": Status.CURRENT} for i in range(20)]
    )
    cluster.wait_for_replica(DEADLINE)
    peaks = {"primary": 0, "replica": 0}
    stop = threading.Event()

    def watch(node: str, url: str) -> None:
        engine = create_engine(url, poolclass=NullPool)
        with engine.connect() as conn:
            while not stop.is_set():
                count = conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity"
                         " WHERE application_name LIKE 'reflexio_store.%'")
                ).scalar_one()  # fmt: skip
                conn.rollback()
                peaks[node] = max(peaks[node], int(count))
        engine.dispose()

    watchers = [
        threading.Thread(target=watch, args=("primary", cluster.primary_url)),
        threading.Thread(target=watch, args=("replica", cluster.replica_url)),
    ]
    for thread in watchers:
        thread.start()
    started = time.monotonic()
    barrier = threading.Barrier(200)
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait(DEADLINE)
        for step in range(3):
            try:
                if (i + step) % 3 == 0:
                    store.add_profiles([{"user_id": "u", "content": f"thread {i} {step}"}])
                else:
                    store.search_profiles("pool note", mode="text", user_id="u")
                outcome = "ok"
            except PoolTimeoutError:
                outcome = "PoolTimeoutError"
            except Exception as exc:
                outcome = f"{type(exc).__name__}: {str(exc)[:200]}"
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE * 2)
    stop.set()
    for thread in watchers:
        thread.join(DEADLINE)
    report(
        "200 threads x 3 operations on pools of 5 + 5 (acquire timeout 1 s)",
        peak_primary_connections=peaks["primary"],
        peak_replica_connections=peaks["replica"],
        outcomes=dict(outcomes),
        duration_s=f"{time.monotonic() - started:.2f}",
    )
    assert not any(t.is_alive() for t in threads)
    assert set(outcomes) <= {"ok", "PoolTimeoutError"}, outcomes
    assert outcomes["ok"] > 0
    assert 1 <= peaks["primary"] <= 5 and 1 <= peaks["replica"] <= 5, peaks
    factory.dispose()


def test_three_organizations_never_see_each_others_rows(cluster: PgCluster) -> None:
    orgs = [f"org{i}" for i in range(3)]
    stores = {org: Store(SessionFactory.from_config(migrated(cluster), settings=StorageSettings()))
              for org in orgs}  # fmt: skip
    written: dict[str, list[str]] = {org: [] for org in orgs}
    leaks: list[str] = []
    checked = Counter[str]()

    def check(org: str, what: str, contents: list[str]) -> None:
        checked[org] += 1
        leaks.extend(f"{org} saw {c!r} via {what}" for c in contents if not c.startswith(org))

    def step(i: int) -> None:
        org = orgs[i % 3]
        store = stores[org]
        rng = random.Random()
        choice = rng.randrange(7)
        user = f"u{rng.randrange(2)}"  # the same user ids in every organization
        if choice == 0:
            content = f"{org} shared words {rng.random()}"
            row = {"user_id": user, "content": content, "embedding": vec(rng.randrange(50)),
                   "status": Status.CURRENT}  # fmt: skip
            ids = store.add_profiles([row])
            written[org].extend(ids)
        elif choice == 1:
            hits = store.search_profiles("shared words", embedding=vec(rng.randrange(50)), top_k=20)
            check(org, "hybrid search", [h.item.content for h in hits])
        elif choice == 2:
            rows = store.list_profiles(user_id=user, consistency=rng.choice(["eventual", "strong"]))
            check(org, "list", [p.content for p in rows])
        elif choice == 3:
            others = [pid for o in orgs if o != org for pid in written[o][-20:]] or ["none"]
            check(org, "get by ids", [p.content for p in store.get_profiles_by_ids(others)])
        elif choice == 4:
            hits = store.search_profiles("shared", mode="text", user_id=user, top_k=50)
            check(org, "text search", [h.item.content for h in hits])
        elif choice == 5:
            for other in [o for o in orgs if o != org]:
                for profile_id in written[other][-5:]:
                    found = store.get_profile(profile_id)
                    if found is not None:
                        check(org, "get", [found.content])
        else:
            # The same run id in every organization, through the single-statement driver path
            # (its compiled statements are cached per schema).
            store.save_state("shared-run", {"status": "running", "metadata": {"owner": org}})
            state = store.load_state("shared-run")
            check(org, "workflow state", [state["metadata"]["owner"]] if state else ["missing"])

    with Loop(step, threads=9) as loop:
        wait_until(loop.more(600), "600 random operations over 3 organizations")
    report(
        "3 organizations, 9 threads, random operations",
        operations=loop.ok,
        reads_checked=sum(checked.values()),
        rows_written=sum(len(v) for v in written.values()),
        leaks=len(leaks),
    )
    assert not loop.failures, (loop.failures, loop.examples)
    assert not leaks, leaks[:5]
    assert all(checked[org] > 0 and written[org] for org in orgs)
    for store in stores.values():
        store.factory.dispose()


SQLITE_WRITER = textwrap.dedent(
    """
    import sys
    from reflexio_store import StorageConfigSQLite
    from reflexio_store.store import Store

    store = Store.from_config(StorageConfigSQLite(db_url=sys.argv[1]))
    round_ = sys.argv[2]
    sys.stdin.readline()  # the writers start up together; each writes when told to
    n = 0
    while True:
        (pid,) = store.add_profiles([{"user_id": "k", "content": f"killtest {round_} {n}"}])
        print(pid, flush=True)  # acknowledged: the transaction has committed
        n += 1
    """
)


def test_sqlite_writer_killed_repeatedly_loses_no_committed_row(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    Store.from_config(StorageConfigSQLite(db_url=url)).count_profiles()  # migrate once
    acknowledged: list[str] = []
    rounds = 3
    started = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", SQLITE_WRITER, url, str(round_)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for round_ in range(rounds)
    ]
    try:
        for round_, proc in enumerate(writers):
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            target = random.randint(10, 40)  # kill after a varying number of commits
            got = 0
            while got < target:
                line = proc.stdout.readline()  # bounded: the writer commits in a loop
                if not line:
                    break
                acknowledged.append(line.strip())
                got += 1
            os.kill(proc.pid, signal.SIGKILL)  # mid-write: the loop never pauses
            proc.wait(DEADLINE)
            acknowledged.extend(line.strip() for line in proc.stdout.read().splitlines())
            assert got == target, f"round {round_}: the writer acknowledged only {got} rows"
    finally:
        for proc in writers:
            if proc.poll() is None:
                proc.kill()
            proc.wait(DEADLINE)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        integrity = conn.execute(text("PRAGMA integrity_check")).scalar_one()
        stored = {r[0] for r in conn.execute(text("SELECT profile_id FROM profiles"))}
        base_rows = conn.execute(text("SELECT count(*) FROM profiles")).scalar_one()
        fts_rows = conn.execute(
            text("SELECT count(*) FROM profiles_fts WHERE profiles_fts MATCH 'killtest'")
        ).scalar_one()
        conn.execute(text("INSERT INTO profiles_fts(profiles_fts) VALUES ('integrity-check')"))
    engine.dispose()
    lost = [pid for pid in acknowledged if pid not in stored]
    report(
        f"SQLite writer kill -9 x {rounds}",
        acknowledged=len(acknowledged),
        lost=len(lost),
        integrity_check=integrity,
        base_rows=base_rows,
        fulltext_rows=fts_rows,
        duration_s=f"{time.monotonic() - started:.2f}",
    )
    assert not lost
    assert integrity == "ok"
    assert fts_rows == base_rows >= len(acknowledged)
