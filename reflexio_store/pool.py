"""Bounded connection pools whose checkout timeout raises our own error, naming the setting."""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import AsyncAdaptedQueuePool, ConnectionPoolEntry, QueuePool

from reflexio_store.errors import PoolTimeoutError


class _TimeoutTranslation:
    role: str = "writer"
    size_setting: str = "REFLEXIO_POSTGRES_POOL_SIZE"
    timeout_setting: str = "REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT"

    def _translate(self, exc: sa_exc.TimeoutError, size: int, timeout: float) -> PoolTimeoutError:
        return PoolTimeoutError(
            f"All {size} {self.role} connections stayed busy for {timeout:g} s. "
            f"Raise {self.size_setting} (pool_size) if the database allows more connections, "
            f"or {self.timeout_setting} to wait longer, or reduce concurrent work."
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
    prefix = "REFLEXIO_POSTGRES_READ_" if role == "reader" else "REFLEXIO_POSTGRES_"
    return type(
        f"{role.capitalize()}{base.__name__}",
        (base,),
        {
            "role": role,
            "size_setting": f"{prefix}POOL_SIZE",
            "timeout_setting": f"{prefix}POOL_ACQUIRE_TIMEOUT",
        },
    )
