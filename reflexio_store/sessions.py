"""The session factory: a writer and a reader, each with its own bounded pool.

`writer()` commits on success and rolls back on error. `reader()` refuses writes (flushes and
DML raise ReadOnlySessionError; on PostgreSQL its transactions are also READ ONLY on the server,
with the optional statement_timeout). With no reader URL the reader uses the writer's engine.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker

from reflexio_store.engines import (
    WRITE_OPTION,
    create_async_postgres_engine,
    create_async_sqlite_engine,
    create_postgres_engine,
    create_sqlite_engine,
)
from reflexio_store.errors import ReadOnlySessionError
from reflexio_store.settings import (
    ResolvedStorage,
    StorageConfig,
    StorageSettings,
    resolve_storage,
)

Consistency = Literal["eventual", "strong"]


class ReadOnlySession(Session):
    """A Session that refuses to write. Search and listing code takes this type."""


def _refuse_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    raise ReadOnlySessionError(
        "This is a reader session: it cannot write. Use factory.writer() for mutations."
    )


def _refuse_dml(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlySessionError(
            "This is a reader session: INSERT/UPDATE/DELETE are refused. "
            "Use factory.writer() for mutations."
        )


event.listen(ReadOnlySession, "before_flush", _refuse_flush)
event.listen(ReadOnlySession, "do_orm_execute", _refuse_dml)


class SessionFactory:
    """Builds writer and reader sessions for one storage configuration (one organization).

    Engines are created lazily on first use; nothing connects at construction.
    """

    def __init__(self, storage: ResolvedStorage) -> None:
        self.storage = storage
        self._lock = threading.RLock()
        self._writer_engine: Engine | None = None
        self._reader_engine: Engine | None = None
        self._async_writer_engine: AsyncEngine | None = None
        self._async_reader_engine: AsyncEngine | None = None
        self._schema_checked = False

    @classmethod
    def from_config(
        cls, config: StorageConfig | None = None, *, settings: StorageSettings | None = None
    ) -> SessionFactory:
        return cls(resolve_storage(config, settings))

    def __repr__(self) -> str:
        s = self.storage
        reader = s.reader_url.masked() if s.reader_url else "writer"
        return f"SessionFactory(writer={s.writer_url.masked()!r}, reader={reader!r})"

    # -- engines -----------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self.storage.backend

    @property
    def has_replica(self) -> bool:
        return self.storage.reader_url is not None

    @property
    def writer_engine(self) -> Engine:
        if self._writer_engine is None:
            with self._lock:
                if self._writer_engine is None:
                    self._writer_engine = self._make_engine("writer")
        return self._writer_engine

    @property
    def reader_engine(self) -> Engine:
        if self.storage.reader_url is None:
            return self.writer_engine
        if self._reader_engine is None:
            with self._lock:
                if self._reader_engine is None:
                    self._reader_engine = self._make_engine("reader")
        return self._reader_engine

    @property
    def async_writer_engine(self) -> AsyncEngine:
        if self._async_writer_engine is None:
            with self._lock:
                if self._async_writer_engine is None:
                    self._async_writer_engine = self._make_async_engine("writer")
        return self._async_writer_engine

    @property
    def async_reader_engine(self) -> AsyncEngine:
        if self.storage.reader_url is None:
            return self.async_writer_engine
        if self._async_reader_engine is None:
            with self._lock:
                if self._async_reader_engine is None:
                    self._async_reader_engine = self._make_async_engine("reader")
        return self._async_reader_engine

    def _make_engine(self, role: Literal["writer", "reader"]) -> Engine:
        s = self.storage
        if s.backend == "sqlite":
            return create_sqlite_engine(s.writer_url, s.writer_pool)
        url = s.reader_url if role == "reader" and s.reader_url else s.writer_url
        pool = s.reader_pool if role == "reader" else s.writer_pool
        return create_postgres_engine(url, pool, role=role, schema=s.schema)

    def _make_async_engine(self, role: Literal["writer", "reader"]) -> AsyncEngine:
        s = self.storage
        if s.backend == "sqlite":
            return create_async_sqlite_engine(s.writer_url, s.writer_pool)
        url = s.reader_url if role == "reader" and s.reader_url else s.writer_url
        pool = s.reader_pool if role == "reader" else s.writer_pool
        return create_async_postgres_engine(url, pool, role=role, schema=s.schema)

    # -- schema readiness ----------------------------------------------------------------------

    def ensure_schema(self) -> None:
        """Once per factory: migrate (if auto-migrate) or verify the schema is at head."""
        if self._schema_checked:
            return
        with self._lock:
            if self._schema_checked:
                return
            from reflexio_store.migrations import ensure_schema_ready

            ensure_schema_ready(self.storage, self.writer_engine)
            self._schema_checked = True

    # -- sessions ------------------------------------------------------------------------------

    def _after_begin_reader(self) -> Any:
        timeout = self.storage.statement_timeout_ms
        statements = "SET TRANSACTION READ ONLY"
        if timeout is not None:
            statements += f"; SET LOCAL statement_timeout = {int(timeout)}"

        def after_begin(_s: Session, _t: SessionTransaction, connection: Connection) -> None:
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(statements)

        return after_begin

    @property
    def session_info(self) -> dict[str, Any]:
        """Put in every session's `info`: what store operations need to know of the deployment."""
        return {
            "embedding_dimensions": self.storage.embedding_dimensions,
            "backend": self.storage.backend,
        }

    def _writer_sessionmaker(self) -> sessionmaker[Session]:
        bind = self.writer_engine.execution_options(**{WRITE_OPTION: True})
        return sessionmaker(bind=bind, expire_on_commit=False, info=self.session_info)

    def _reader_sessionmaker(self, consistency: Consistency) -> sessionmaker[ReadOnlySession]:
        engine = self.writer_engine if consistency == "strong" else self.reader_engine
        return sessionmaker(
            bind=engine, class_=ReadOnlySession, expire_on_commit=False, info=self.session_info
        )

    @contextmanager
    def writer(self) -> Iterator[Session]:
        """A read-write session on the primary: commits on success, rolls back on error."""
        self.ensure_schema()
        with self._writer_sessionmaker()() as session, session.begin():
            yield session

    @contextmanager
    def reader(self, consistency: Consistency = "eventual") -> Iterator[ReadOnlySession]:
        """A read-only session on the replica (or on the writer when `consistency="strong"`)."""
        self.ensure_schema()
        session = self._reader_sessionmaker(consistency)()
        event.listen(session, "after_begin", self._after_begin_reader())
        try:
            with session.begin():
                yield session
                # Nothing to commit: end the read transaction without a COMMIT round trip cost.
        finally:
            session.close()

    @asynccontextmanager
    async def async_writer(self) -> AsyncIterator[AsyncSession]:
        self.ensure_schema()
        bind = self.async_writer_engine.execution_options(**{WRITE_OPTION: True})
        maker = async_sessionmaker(bind=bind, expire_on_commit=False, info=self.session_info)
        async with maker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def async_reader(
        self, consistency: Consistency = "eventual"
    ) -> AsyncIterator[AsyncSession]:
        self.ensure_schema()
        engine = self.async_writer_engine if consistency == "strong" else self.async_reader_engine
        maker = async_sessionmaker(
            bind=engine,
            sync_session_class=ReadOnlySession,
            expire_on_commit=False,
            info=self.session_info,
        )
        async with maker() as session:
            event.listen(session.sync_session, "after_begin", self._after_begin_reader())
            async with session.begin():
                yield session

    # -- lifecycle -----------------------------------------------------------------------------

    def dispose(self) -> None:
        """Close every pooled connection (sync engines). Use `adispose` for the async ones."""
        for engine in (self._writer_engine, self._reader_engine):
            if engine is not None:
                engine.dispose()

    async def adispose(self) -> None:
        for engine in (self._async_writer_engine, self._async_reader_engine):
            if engine is not None:
                await engine.dispose()
        self.dispose()


_factories: dict[ResolvedStorage, SessionFactory] = {}
_factories_lock = threading.Lock()


def get_session_factory(config: StorageConfig | None = None) -> SessionFactory:
    """The process-wide factory for `config` (default: the environment), built on first call."""
    storage = resolve_storage(config)
    with _factories_lock:
        factory = _factories.get(storage)
        if factory is None:
            factory = _factories[storage] = SessionFactory(storage)
        return factory


def reset_session_factories() -> None:
    """Dispose and forget every cached factory (tests, or after forking)."""
    with _factories_lock:
        for factory in _factories.values():
            factory.dispose()
        _factories.clear()
