"""The Reflexio storage contract: `Store` (sync) and `AsyncStore` (asyncio) over one
organization's SessionFactory. Operations are declared once in the mixins below."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reflexio_store.errors import ValidationError
from reflexio_store.sessions import Consistency, SessionFactory, get_session_factory
from reflexio_store.settings import StorageConfig
from reflexio_store.store._operation import Operation
from reflexio_store.store.memories import MemoryOperations
from reflexio_store.store.operation_state import OperationStateOperations
from reflexio_store.store.organizations import OrganizationOperations
from reflexio_store.store.records import RecordOperations
from reflexio_store.store.requests import RequestOperations
from reflexio_store.store.retention import RetentionOperations
from reflexio_store.store.search import SearchOperations
from reflexio_store.store.workflow import WorkflowOperations


class _Operations(
    RequestOperations,
    MemoryOperations,
    RetentionOperations,
    SearchOperations,
    RecordOperations,
    OperationStateOperations,
    OrganizationOperations,
    WorkflowOperations,
):
    """Every store operation; each mixin lives in its own module."""


def _consistency(op: Operation[Any, Any], kwargs: dict[str, Any]) -> Consistency:
    if op.route == "fresh":
        return "strong"
    value = kwargs.get("consistency", "eventual")
    if value not in ("eventual", "strong"):
        raise ValidationError(f"consistency must be 'eventual' or 'strong', not {value!r}.")
    return "strong" if value == "strong" else "eventual"


class _StoreBase:
    def __init__(self, factory: SessionFactory | None = None) -> None:
        self.factory = factory if factory is not None else get_session_factory()

    @classmethod
    def from_config(cls, config: StorageConfig | None = None) -> Any:
        return cls(get_session_factory(config))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.factory!r})"


class Store(_StoreBase, _Operations):
    """Synchronous store. Every method opens (and closes) its own session on the right engine."""

    def _bind(self, op: Operation[Any, Any]) -> Callable[..., Any]:
        factory = self.factory

        def call(*args: Any, **kwargs: Any) -> Any:
            if op.connection:
                with factory.writer_connection(write=op.route == "write") as conn:
                    return op.fn(conn, *args, **kwargs)
            if op.route == "write":
                with factory.writer() as session:
                    return op.fn(session, *args, **kwargs)
            with factory.reader(_consistency(op, kwargs)) as session:
                return op.fn(session, *args, **kwargs)

        call.__name__ = op.name
        call.__doc__ = op.fn.__doc__
        return call


class AsyncStore(_StoreBase, _Operations):
    """The same operations for asyncio: `await store.add_profiles(...)`."""

    def _bind(self, op: Operation[Any, Any]) -> Callable[..., Any]:
        factory = self.factory

        async def call(*args: Any, **kwargs: Any) -> Any:
            if op.connection:
                async with factory.async_writer_connection(write=op.route == "write") as conn:
                    return await conn.run_sync(op.fn, *args, **kwargs)
            if op.route == "write":
                async with factory.async_writer() as session:
                    return await session.run_sync(op.fn, *args, **kwargs)
            async with factory.async_reader(_consistency(op, kwargs)) as session:
                return await session.run_sync(op.fn, *args, **kwargs)

        call.__name__ = op.name
        call.__doc__ = op.fn.__doc__
        return call
