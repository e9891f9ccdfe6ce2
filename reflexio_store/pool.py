"""Bounded connection pools whose checkout timeout raises our own error, naming the setting."""

from __future__ import annotations

import threading
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
    inline_writes = 0
    """Writes AsyncStore ran on an event loop's thread since the last passive checkpoint
    (reflexio_store.inline_sqlite)."""

    def _do_get(self) -> ConnectionPoolEntry:
        if getattr(_taking_idle, "active", False):
            try:
                return self._pool.get(False)
            except sqla_queue.Empty:
                raise _NoIdleConnection from None
        try:
            return super()._do_get()
        except sa_exc.TimeoutError as exc:
            raise self._translate(exc, self.size(), self._timeout) from None

    def idle_connection(self) -> PoolProxiedConnection | None:
        """A connection that sits idle in the pool, or None where taking one would wait for
        another caller to give one back or open a new connection."""
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
