"""One definition per store operation, usable from a sync `Store` and an async `AsyncStore`.

An operation is a plain function `fn(session, *args, **kwargs)` plus a route:
- "write": a writer session (primary), committed on success, rolled back on error.
- "fresh": a read-only session on the primary: reads that generation depends on (pending rows,
  operation state, locks, counts) and must see every committed write.
- "read": a read-only session on the reader (replica) unless the call passes
  `consistency="strong"`. Searches, gets and listings use this route.

Declared once on a mixin class, e.g. `add_profiles = write(profiles.add_profiles)`, the same
attribute is a sync method on `Store` and a coroutine method on `AsyncStore` (which runs the same
function, through the same route and pools, on a worker thread; on SQLite, a single statement that
cannot wait runs on the event loop's thread: reflexio_store.inline_sqlite).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    Literal,
    ParamSpec,
    Protocol,
    TypeVar,
    overload,
)

from sqlalchemy.orm import Session

from reflexio_store.one_statement import OneStatement
from reflexio_store.sessions import Consistency

if TYPE_CHECKING:
    from reflexio_store.store import AsyncStore, Store

P = ParamSpec("P")
T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)
Route = Literal["write", "fresh", "read"]


class Operation(Generic[P, T]):
    def __init__(
        self, fn: Callable[Concatenate[Any, P], T], route: Route, *, connection: bool = False
    ) -> None:
        self.fn = fn
        self.route = route
        # Single-statement hot paths (workflow save/load) take a OneStatement: an ORM Session
        # and its transaction bookkeeping cost more than the statement itself.
        self.connection = connection
        self.__doc__ = fn.__doc__
        self.name = fn.__name__

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @functools.cached_property
    def signature(self) -> inspect.Signature:
        """The method's signature as a caller sees it: the function's, without its session
        (and, on the read route, with `consistency`), so that help() and IDEs show it."""
        parameters = list(inspect.signature(self.fn).parameters.values())[1:]
        if self.route == "read":
            keyword = inspect.Parameter(
                "consistency",
                inspect.Parameter.KEYWORD_ONLY,
                default="eventual",
                annotation="Literal['eventual', 'strong']",
            )
            at = next(
                (i for i, p in enumerate(parameters) if p.kind is inspect.Parameter.VAR_KEYWORD),
                len(parameters),
            )
            parameters.insert(at, keyword)
        return inspect.Signature(parameters)

    @property
    def __signature__(self) -> inspect.Signature:
        """`Store.search_profiles` (on the class): self, then the method's parameters."""
        this = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        return self.signature.replace(parameters=[this, *self.signature.parameters.values()])

    def __call__(self, store: Any, /, *args: Any, **kwargs: Any) -> Any:
        """`Store.add_profiles(store, ...)`, as any method called through its class."""
        return store._bind(self)(*args, **kwargs)

    @overload
    def __get__(self, obj: None, owner: type) -> Operation[P, T]: ...
    @overload
    def __get__(self, obj: AsyncStore, owner: type) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __get__(self, obj: Store, owner: type) -> Callable[P, T]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        return obj._bind(self)


class ReadMethod(Protocol[P, T_co]):
    """A read operation on `Store`: the function's own parameters, plus `consistency`.

    The route consumes `consistency` (which engine to read from); the function never sees it.
    Typing cannot add a keyword to a ParamSpec, so a call that passes `consistency` is checked
    against the second form (its other arguments unchecked)."""

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> T_co: ...
    @overload
    def __call__(self, *args: Any, consistency: Consistency, **kwargs: Any) -> T_co: ...


class AsyncReadMethod(Protocol[P, T_co]):
    """A read operation on `AsyncStore` (see ReadMethod)."""

    @overload
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T_co]: ...
    @overload
    def __call__(self, *args: Any, consistency: Consistency, **kwargs: Any) -> Awaitable[T_co]: ...


class ReadOperation(Operation[P, T]):
    """An operation on the "read" route: its methods also take `consistency`."""

    @overload
    def __get__(self, obj: None, owner: type) -> ReadOperation[P, T]: ...
    @overload
    def __get__(self, obj: AsyncStore, owner: type) -> AsyncReadMethod[P, T]: ...
    @overload
    def __get__(self, obj: Store, owner: type) -> ReadMethod[P, T]: ...
    def __get__(self, obj: Any, owner: type) -> Any:
        return super().__get__(obj, owner)


def write(fn: Callable[Concatenate[Session, P], T]) -> Operation[P, T]:
    return Operation(fn, "write")


def fresh(fn: Callable[Concatenate[Session, P], T]) -> Operation[P, T]:
    return Operation(fn, "fresh")


def read(fn: Callable[Concatenate[Session, P], T]) -> ReadOperation[P, T]:
    """A read on the replica, or on the primary when the call passes consistency="strong"."""
    return ReadOperation(fn, "read")


def write_connection(fn: Callable[Concatenate[OneStatement, P], T]) -> Operation[P, T]:
    """Like `write`, but `fn` gets a OneStatement on the primary and runs exactly ONE
    statement, in autocommit: the statement is its own transaction (one round trip on
    PostgreSQL)."""
    return Operation(fn, "write", connection=True)


def fresh_connection(fn: Callable[Concatenate[OneStatement, P], T]) -> Operation[P, T]:
    """Like `fresh`, but `fn` gets a OneStatement on the primary and runs exactly ONE
    read-only statement (in autocommit)."""
    return Operation(fn, "fresh", connection=True)


def embedding_dimensions(session: Session) -> int:
    """The deployment's vector size, put in every session's info by the SessionFactory."""
    return int(session.info.get("embedding_dimensions", 512))
