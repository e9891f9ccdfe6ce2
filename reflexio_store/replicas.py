"""Which replica serves a read: health with back-off, an optional lag bound, and spreading.

Each replica URL has one health record per process, shared by every factory (organization) that
reads from it, so an outage is noticed, logged and backed off once. A replica that failed to
connect, or whose connection broke during a read, is "down": reads go to the primary (still
read-only) until its back-off ends; then one read probes it while the others stay on the primary.
A probe that fails doubles the back-off (up to BACKOFF_MAX_SECONDS); one that succeeds brings the
replica back. Every change of state is logged once, with the masked URL.

With a lag bound (REFLEXIO_POSTGRES_READ_MAX_LAG_MS), a read that finds the replica's lag
measurement older than LAG_CHECK_SECONDS measures it again on its own connection (one statement
inside its read-only transaction, so no extra connection); a replica further behind is skipped.

Nothing here creates an engine: the session factory passes the functions that do.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from reflexio_store.urls import DatabaseURL

log = logging.getLogger(__name__)

BACKOFF_SECONDS = 1.0
"""How long a replica that just failed is left alone before one read probes it again."""
BACKOFF_MAX_SECONDS = 30.0
LAG_CHECK_SECONDS = 1.0
"""How long a lag measurement is reused before a read measures again."""

# Caught up when everything received is replayed while a WAL receiver runs: an idle primary
# writes nothing, so the age of the last replayed transaction grows although nothing is
# missing. Without a receiver (disconnected from the primary) only that age says anything.
LAG_SQL = text(
    "SELECT CASE"
    " WHEN NOT pg_is_in_recovery() THEN 0"
    " WHEN (SELECT pid FROM pg_stat_wal_receiver) IS NOT NULL"
    "  AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())"
    "  * 1000, 'Infinity') END::float8"
)


@dataclass
class ReplicaHealth:
    """One replica's state in this process. Thread-safe; the fast path (up) takes no lock."""

    name: str  # the masked URL
    state: str = "up"  # "up" or "down"
    reason: str | None = None
    down_until: float = 0.0
    backoff: float = BACKOFF_SECONDS
    probing: bool = False
    lag_ms: float | None = None
    lag_measured_at: float = float("-inf")
    lag_measuring: bool = False
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def admit(self) -> bool | None:
        """None: skip this replica. False: read from it. True: read from it as the probe."""
        if self.state == "up":
            return False
        with self._lock:
            if self.state == "up":
                return False
            if self.probing or time.monotonic() < self.down_until:
                return None
            self.probing = True
            return True

    def failed(self, reason: str, *, probe: bool) -> None:
        """A connection to the replica failed or broke: reads avoid it for the back-off."""
        with self._lock:
            self.failures += 1
            if self.state == "up":
                self.state, self.reason, self.backoff = "down", reason, BACKOFF_SECONDS
                self.down_until = time.monotonic() + self.backoff
                went_down = True
            else:
                went_down = False
                if probe:
                    self.probing = False
                    self.reason = reason
                    self.backoff = min(self.backoff * 2, BACKOFF_MAX_SECONDS)
                    self.down_until = time.monotonic() + self.backoff
        if went_down:
            log.warning(
                "Replica %s is down (%s): reads go to the primary; probing again in %g s.",
                self.name,
                reason,
                BACKOFF_SECONDS,
            )

    def succeeded(self, *, probe: bool) -> None:
        if not probe or self.state == "up":
            return
        with self._lock:
            if self.state == "up":
                return
            self.state, self.reason, self.probing = "up", None, False
            self.backoff = BACKOFF_SECONDS
        log.warning("Replica %s is back: reads use it again.", self.name)

    def probe_abandoned(self) -> None:
        """The probe read did not get as far as the replica (e.g. skipped for lag)."""
        with self._lock:
            self.probing = False

    def release_lag(self) -> None:
        """The measuring read failed before measuring: let another read measure."""
        with self._lock:
            self.lag_measuring = False

    def lag_due(self) -> bool:
        """True for the one caller that should measure the lag now."""
        if time.monotonic() - self.lag_measured_at < LAG_CHECK_SECONDS or self.lag_measuring:
            return False
        with self._lock:
            if self.lag_measuring:
                return False
            self.lag_measuring = True
            return True

    def record_lag(self, lag_ms: float | None) -> None:
        with self._lock:
            self.lag_ms = lag_ms
            self.lag_measured_at = time.monotonic()
            self.lag_measuring = False


_health: dict[URL, ReplicaHealth] = {}
_health_lock = threading.Lock()


def health_of(url: DatabaseURL) -> ReplicaHealth:
    """The process-wide health record of the replica at `url`."""
    with _health_lock:
        record = _health.get(url.url)
        if record is None:
            record = _health[url.url] = ReplicaHealth(url.masked())
        return record


def reset_health() -> None:
    """Every replica back to "up" and unmeasured (tests, or after forking). Records are reset in
    place: factories that exist keep sharing them."""
    with _health_lock:
        records = list(_health.values())
    for record in records:
        with record._lock:
            record.state, record.reason, record.probing = "up", None, False
            record.down_until, record.backoff = 0.0, BACKOFF_SECONDS
            record.lag_ms, record.lag_measured_at, record.lag_measuring = None, float("-inf"), False


@dataclass(frozen=True)
class Choice:
    """A replica chosen for one read: `probe` when this read tests a replica that was down,
    `measure_lag` when it must measure the lag first."""

    replica: Replica
    probe: bool
    measure_lag: bool


class Replica:
    """One replica URL; its engines (each with its own bounded pool) come from the factory."""

    def __init__(
        self,
        url: DatabaseURL,
        make_engine: Callable[[DatabaseURL], Engine],
        make_async_engine: Callable[[DatabaseURL], AsyncEngine],
    ) -> None:
        self.url = url
        self.health = health_of(url)
        self._make_engine = make_engine
        self._make_async_engine = make_async_engine

    def __repr__(self) -> str:
        return f"Replica({self.url.masked()!r}, {self.health.state})"

    @property
    def engine(self) -> Engine:
        """The factory's engine for this replica (the factory caches and releases it)."""
        return self._make_engine(self.url)

    @property
    def async_engine(self) -> AsyncEngine:
        return self._make_async_engine(self.url)


class ReplicaRouter:
    """Chooses the replica for each eventual read: round robin over those admitted."""

    def __init__(
        self,
        urls: Sequence[DatabaseURL],
        make_engine: Callable[[DatabaseURL], Engine],
        make_async_engine: Callable[[DatabaseURL], AsyncEngine],
        *,
        max_lag_ms: int | None = None,
    ) -> None:
        self.replicas = [Replica(u, make_engine, make_async_engine) for u in urls]
        self.max_lag_ms = max_lag_ms
        self._turn = itertools.count()

    def __bool__(self) -> bool:
        return bool(self.replicas)

    def choose(self) -> Choice | None:
        """The replica for the next eventual read, or None when every replica is down or too
        far behind (the read then goes to the primary)."""
        count = len(self.replicas)
        if count == 0:
            return None
        start = next(self._turn)
        for i in range(count):
            replica = self.replicas[(start + i) % count]
            probe = replica.health.admit()
            if probe is None:
                continue
            # A stale measurement is renewed by this read, even for a replica skipped for lag
            # (else it would never be measured again).
            measure = self.max_lag_ms is not None and replica.health.lag_due()
            if not measure and not self.lag_acceptable(replica):
                if probe:
                    replica.health.probe_abandoned()
                continue
            return Choice(replica, probe, measure)
        return None

    def lag_acceptable(self, replica: Replica) -> bool:
        """False when a lag bound is set and the last measurement exceeds it."""
        if self.max_lag_ms is None:
            return True
        lag = replica.health.lag_ms
        return lag is not None and lag <= self.max_lag_ms

    def too_far_behind(self, replica: Replica, lag_ms: float | None) -> bool:
        """Record a measurement taken on a read's connection; True if that read must go to the
        primary instead."""
        was_acceptable = self.lag_acceptable(replica)
        replica.health.record_lag(lag_ms)
        if self.lag_acceptable(replica):
            if not was_acceptable and lag_ms is not None:
                log.warning("Replica %s caught up (%.0f ms behind).", replica.health.name, lag_ms)
            return False
        if was_acceptable:
            log.warning(
                "Replica %s is %s ms behind (bound %s ms): reads skip it.",
                replica.health.name,
                "?" if lag_ms is None else f"{lag_ms:.0f}",
                self.max_lag_ms,
            )
        return True

    def status(self, measure: bool = True) -> list[dict[str, Any]]:
        """Each replica's state and lag (measured now when `measure`), for `check`."""
        out: list[dict[str, Any]] = []
        for replica in self.replicas:
            health = replica.health
            entry: dict[str, Any] = {"url": health.name, "state": health.state}
            if measure:
                try:
                    with replica.engine.connect() as conn:
                        lag = conn.execute(LAG_SQL).scalar()
                    entry["lag_ms"] = None if lag is None else float(lag)
                    entry["reachable"] = True
                except Exception as exc:  # reported, not raised: check shows every replica
                    from reflexio_store.db_errors import server_reason

                    entry["reachable"] = False
                    entry["reason"] = server_reason(exc, replica.url)
            elif health.lag_ms is not None:
                entry["lag_ms"] = health.lag_ms
            if health.reason:
                entry.setdefault("reason", health.reason)
            out.append(entry)
        return out
