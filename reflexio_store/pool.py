"""Bounded connection pools whose checkout timeout raises our own error, naming the setting."""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import (
    AsyncAdaptedQueuePool,
    ConnectionPoolEntry,
    PoolProxiedConnection,
    QueuePool,
)
from sqlalchemy.util import queue as sqla_queue

from reflexio_store.errors import PoolTimeoutError


class _TimeoutTranslation:
    role: str = "writer"
    size_setting: str = "REFLEXIO_POSTGRES_POOL_SIZE"
    size_field: str = "pool_size"
    timeout_setting: str = "REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT"
    timeout_field: str = "pool_acquire_timeout"

    def _translate(self, exc: sa_exc.TimeoutError, size: int, timeout: float) -> PoolTimeoutError:
        return PoolTimeoutError(
            f"All {size} {self.role} connections stayed busy for {timeout:g} s. "
            f"Raise {self.size_setting} (StorageConfigPostgres.{self.size_field}) if the "
            f"database allows more connections, or {self.timeout_setting} "
            f"(StorageConfigPostgres.{self.timeout_field}) to wait longer, or reduce concurrent "
            "work. Organizations on one database share this pool."
        )


class _NoIdleConnection(Exception):
    pass


_taking_idle = threading.local()


class BoundedQueuePool(_TimeoutTranslation, QueuePool):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # What AsyncStore's inline calls keep per database (reflexio_store.inline_sqlite):
        # writes since the last passive checkpoint, and per operation the calls left to send
        # to a worker after an inline call that held the loop too long.
        self.inline_writes = 0
        self.inline_backoff: dict[str, int] = {}

    def _do_get(self) -> ConnectionPoolEntry:
        if getattr(_taking_idle, "active", False):
            try:
                record = self._pool.get(False)
            except sqla_queue.Empty:
                raise _NoIdleConnection from None
            if not self._ready(record):
                self._pool.put(record, False)
                raise _NoIdleConnection
            return record
        try:
            return super()._do_get()
        except sa_exc.TimeoutError as exc:
            raise self._translate(exc, self.size(), self._timeout) from None

    def _ready(self, record: Any) -> bool:
        """The record's connection would be handed out as it is: open, not invalidated, not
        due for recycling (each of which makes checkout open a new connection)."""
        recycle = self._recycle > -1 and time.time() - record.starttime > self._recycle
        return not (recycle or record._is_hard_or_soft_invalidated())

    def idle_connection(self) -> PoolProxiedConnection | None:
        """A connection that sits idle in the pool, ready as it is, or None where taking one
        would wait for another caller to give one back or open a connection."""
        _taking_idle.active = True
        try:
            return self.connect()
        except _NoIdleConnection:
            return None
        finally:
            _taking_idle.active = False


class BoundedAsyncQueuePool(_TimeoutTranslation, AsyncAdaptedQueuePool):
    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except sa_exc.TimeoutError as exc:
            raise self._translate(exc, self.size(), self._timeout) from None


def labelled_pool_class(base: type[Any], role: str) -> type[Any]:
    """A pool class whose errors name the settings of `role` (writer or reader).

    A class rather than an attribute, because SQLAlchemy recreates pools from their class."""
    reader = role == "reader"
    env = "REFLEXIO_POSTGRES_READ_" if reader else "REFLEXIO_POSTGRES_"
    field = "read_pool_" if reader else "pool_"
    return type(
        f"{role.capitalize()}{base.__name__}",
        (base,),
        {
            "role": role,
            "size_setting": f"{env}POOL_SIZE",
            "size_field": f"{field}size",
            "timeout_setting": f"{env}POOL_ACQUIRE_TIMEOUT",
            "timeout_field": f"{field}acquire_timeout",
        },
    )
