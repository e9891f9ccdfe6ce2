"""One bounded pool per database and role for the whole process, whatever the number of
organizations.

Organizations whose configurations point at the same database share its engines: the registry
keys an engine by what decides its connections (URL with credentials, role, sync or async, pool
size, acquire timeout, pooler mode), never by organization. What is per organization (the
schema, the statement timeout, read-only transactions) is an execution option or a session
class applied per session and connection by the session factory, so an idle organization holds
no connection and 100 organizations on pool size 5 hold at most 5 writer connections.

Each session factory holds a lease on the engines it uses; the last lease released disposes the
engine. Organizations with different pool settings on one database get one pool per distinct
setting (the bound is then the sum of the distinct sizes); that split is logged once.

SQLite keeps one file per organization: at most `max_open_sqlite` files keep connections open.
When another file is used, the least recently used idle ones are disposed (their engines stay
usable and reconnect on next use). In-memory SQLite databases are never shared nor closed: the
database lives in its one connection.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from reflexio_store.settings import DEFAULT_SQLITE_MAX_OPEN_DATABASES, PoolSettings
from reflexio_store.urls import DatabaseURL

Flavor = Literal["sync", "async"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineKey:
    """What decides an engine's connections. `identity` digests the full URL (credentials
    included, so two roles on one database get two pools); only the masked URL is ever shown."""

    identity: str = field(repr=False)
    database: str
    role: str
    flavor: Flavor
    size: int
    acquire_timeout: float
    pooler: str | None

    @classmethod
    def of(
        cls,
        url: DatabaseURL,
        *,
        role: str,
        flavor: Flavor,
        pool: PoolSettings,
        pooler: str | None,
    ) -> EngineKey:
        full = url.url.render_as_string(hide_password=False)
        return cls(
            identity=hashlib.sha256(full.encode()).hexdigest(),
            database=url.masked(),
            role=role,
            flavor=flavor,
            size=pool.size,
            acquire_timeout=pool.acquire_timeout,
            pooler=pooler,
        )

    @property
    def pool_group(self) -> tuple[str, str, str]:
        return (self.identity, self.role, self.flavor)


@dataclass
class _Entry:
    engine: Any
    leases: int = 0


def _sync_engine(engine: Any) -> Engine:
    return engine.sync_engine if isinstance(engine, AsyncEngine) else engine


class EngineRegistry:
    """The process-wide engines, leased by session factories."""

    def __init__(self, max_open_sqlite: int = DEFAULT_SQLITE_MAX_OPEN_DATABASES) -> None:
        self.max_open_sqlite = max_open_sqlite
        self._lock = threading.Lock()
        self._entries: dict[EngineKey, _Entry] = {}
        self._open_sqlite: OrderedDict[EngineKey, None] = OrderedDict()

    def acquire(self, key: EngineKey, build: Callable[[], Any]) -> Any:
        """The shared engine for `key` (built on first use), with one more lease on it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._note_split(key)
                entry = self._entries[key] = _Entry(build())
            entry.leases += 1
            return entry.engine

    def release(self, key: EngineKey) -> Any | None:
        """Give a lease back. Returns the engine when that was the last lease: the caller
        disposes it (sync or async, as it can)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            entry.leases -= 1
            if entry.leases > 0:
                return None
            del self._entries[key]
            self._open_sqlite.pop(key, None)
            return entry.engine

    def touch_sqlite(self, key: EngineKey) -> None:
        """Mark a sync SQLite engine as just used; close the least recently used idle files
        beyond the bound."""
        with self._lock:
            self._open_sqlite[key] = None
            self._open_sqlite.move_to_end(key)
            excess = len(self._open_sqlite) - self.max_open_sqlite
            if excess <= 0:
                return
            for candidate in list(self._open_sqlite):
                if excess <= 0 or candidate == key:
                    break
                entry = self._entries.get(candidate)
                if entry is None:
                    del self._open_sqlite[candidate]
                    excess -= 1
                    continue
                engine = _sync_engine(entry.engine)
                if engine.pool.checkedout():  # type: ignore[attr-defined]
                    continue  # in use right now: it goes on the next pass
                # The engine stays valid: dispose() swaps in an empty pool that reconnects on use.
                engine.dispose()
                del self._open_sqlite[candidate]
                excess -= 1

    def mark_sqlite_used(self, key: EngineKey) -> bool:
        """`touch_sqlite` that never waits and never closes a file: True if `key` is among
        the open files and is now the most recently used; False when the registry's lock is
        taken or the file was closed (a full `touch_sqlite` must then run, off the loop)."""
        if not self._lock.acquire(blocking=False):
            return False
        try:
            if key not in self._open_sqlite:
                return False
            self._open_sqlite.move_to_end(key)
            return True
        finally:
            self._lock.release()

    def open_sqlite_count(self) -> int:
        with self._lock:
            return len(self._open_sqlite)

    def engines(self) -> list[EngineKey]:
        with self._lock:
            return list(self._entries)

    def dispose_all(self) -> None:
        """Dispose every sync engine and forget them all (tests, or after forking)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
            self._open_sqlite.clear()
        for entry in entries:
            if not isinstance(entry.engine, AsyncEngine):
                entry.engine.dispose()

    def _note_split(self, key: EngineKey) -> None:
        others = [k for k in self._entries if k.pool_group == key.pool_group]
        if others:
            sizes = ", ".join(str(k.size) for k in [*others, key])
            log.warning(
                "Organizations on %s use different %s pool settings; each distinct setting gets "
                "its own pool (sizes %s), so this process may open up to %d %s connections. "
                "Give them the same pool settings to share one pool.",
                key.database,
                key.role,
                sizes,
                sum(k.size for k in [*others, key]),
                key.role,
            )


registry = EngineRegistry()
"""The process's engines. Session factories lease from it; nothing connects at import."""
