"""Bounded connection pools whose checkout timeout raises our own error, naming the setting."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, QueuePool

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


class BoundedQueuePool(_TimeoutTranslation, QueuePool):
    def _do_get(self) -> ConnectionPoolEntry:
        try:
            return super()._do_get()
        except sa_exc.TimeoutError as exc:
            raise self._translate(exc, self.size(), self._timeout) from None


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
