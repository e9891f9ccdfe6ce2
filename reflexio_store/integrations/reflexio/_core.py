"""What every part of the adapter shares: the organization's Store, its session routes, the
embedder, and small statement helpers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from reflexio.server.services.storage.storage_base import BaseStorage
from sqlalchemy import ColumnElement, Result, inspect, select
from sqlalchemy.orm import Session

from reflexio_store import migrations
from reflexio_store.errors import ConfigurationError, NotFoundError, ValidationError
from reflexio_store.integrations.reflexio.convert import store_statuses
from reflexio_store.integrations.reflexio.embedding import (
    BatchEmbedder,
    Embedder,
    batch_embedder,
    reflexio_embedder,
)
from reflexio_store.sessions import SessionFactory, get_session_factory
from reflexio_store.settings import StorageConfig
from reflexio_store.store import Store
from reflexio_store.validation import MAX_KEY_BYTES, as_vector, int_ids, require_text, text_ids


class ReflexioNotFoundError(NotFoundError, ValueError):
    """A Reflexio update of a row that does not exist (Reflexio documents a ValueError)."""


class AdapterCore(BaseStorage):
    """The shared state of ReflexioStoreStorage; the methods live in the per-mixin modules."""

    def __init__(
        self,
        org_id: str,
        *,
        config: StorageConfig | None = None,
        embedder: Embedder | None = None,
        base_dir: str | None = None,
        factory: SessionFactory | None = None,
    ) -> None:
        require_text(org_id, "org_id", max_bytes=MAX_KEY_BYTES)
        if factory is not None and not isinstance(factory, SessionFactory):
            raise ConfigurationError(
                f"factory must be a reflexio_store SessionFactory, got {type(factory).__name__}."
            )
        if embedder is not None and not callable(embedder):
            raise ConfigurationError(
                "embedder must be a callable taking a list of texts and returning one vector "
                f"per text, got {type(embedder).__name__}."
            )
        super().__init__(org_id, base_dir=base_dir)
        self.factory = factory if factory is not None else get_session_factory(config)
        self.store = Store(self.factory)
        self._embed: BatchEmbedder = (
            batch_embedder(embedder) if embedder is not None else reflexio_embedder()
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(org_id={self.org_id!r}, factory={self.factory!r})"

    # -- routes: writes on the primary; what generation reads back on the primary; searches on
    # the reader (the replica when configured).

    @contextmanager
    def _write(self) -> Iterator[Session]:
        with self.factory.writer() as session:
            yield session

    @contextmanager
    def _fresh(self) -> Iterator[Session]:
        # These reads only read: each statement in autocommit (one round trip on PostgreSQL).
        with self.factory.reader("strong", autocommit=True) as session:
            yield session

    @contextmanager
    def _fresh_transaction(self) -> Iterator[Session]:
        """`_fresh` in a READ ONLY transaction, which a server-side cursor (yield_per) needs."""
        with self.factory.reader("strong") as session:
            yield session

    # -- migrations --------------------------------------------------------------------------

    def migrate(self) -> bool:
        """Bring this organization's database to the head revision (Alembic, on the writer)."""
        migrations.upgrade(self.factory.storage)
        return True

    def check_migration_needed(self) -> bool:
        head = migrations.head_revision()
        storage = self.factory.storage
        with self.factory.writer_engine.connect() as connection:
            if not inspect(connection).has_table(migrations.VERSION_TABLE, schema=storage.schema):
                return True
            return migrations.current_revision(connection, storage.schema) != head

    # -- helpers -----------------------------------------------------------------------------

    def _vectors(self, texts: Sequence[str]) -> list[Any]:
        """Embeddings for `texts`; empty texts get none (an all-zero vector has no direction)."""
        wanted = [i for i, t in enumerate(texts) if t and t.strip()]
        out: list[Any] = [None] * len(texts)
        if not wanted:
            return out
        dims = int(self.factory.session_info.get("embedding_dimensions", 512))
        vectors = self._embed([texts[i] for i in wanted])
        for index, vector in zip(wanted, vectors, strict=True):
            out[index] = as_vector(vector, dims)
        return out


def as_list(vector: Any) -> list[float]:
    """A stored vector as Reflexio's models carry it (a list; empty for none)."""
    if vector is None:
        return []
    return vector.tolist() if hasattr(vector, "tolist") else [float(x) for x in vector]


def rowcount(result: Result[Any]) -> int:
    return max(int(getattr(result, "rowcount", 0) or 0), 0)


def inserted(result: Any) -> bool:
    """Whether an INSERT ... ON CONFLICT DO NOTHING RETURNING ... wrote its row (rowcount is
    not reliable for it on every driver)."""
    return result.first() is not None


def key_list(values: Any, field: str) -> list[str]:
    """Reflexio's list of text ids: an empty list stays empty (nothing to do); otherwise each id
    is checked, and a single str is refused instead of being read as its characters."""
    if isinstance(values, list) and not values:
        return []
    return text_ids(values, field)


def id_list(values: Any, field: str) -> list[int]:
    """Reflexio's list of integer ids, as key_list."""
    if isinstance(values, list) and not values:
        return []
    return int_ids(values, field)


def status_condition(column: Any, status_filter: Sequence[Any]) -> ColumnElement[bool]:
    """Reflexio's status filter list; an empty list means any status (as Reflexio's SQL does)."""
    values = store_statuses(status_filter)
    if not values:
        return column.is_not(None)  # type: ignore[no-any-return]
    return column.in_(values)  # type: ignore[no-any-return]


def one_status(column: Any, status: Any) -> ColumnElement[bool]:
    return status_condition(column, [status])


def require_limit(limit: Any, field: str = "limit") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise ValidationError(f"{field} must be a non-negative integer, got {limit!r}.")
    return limit


def exists(session: Session, column: Any, value: Any) -> bool:
    return session.execute(select(column).where(column == value).limit(1)).first() is not None
