"""The Reflexio storage contract: `Store` (sync) and `AsyncStore` (asyncio) over one
organization's SessionFactory. Operations are declared once in the mixins below."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from reflexio_store.inline_sqlite import NOT_RUN, checkpoint, checkpoint_due, run_inline
from reflexio_store.reads import run_read
from reflexio_store.sessions import Consistency, SessionFactory, get_session_factory
from reflexio_store.settings import StorageConfig
from reflexio_store.store._operation import Operation
from reflexio_store.store.agent_playbook_sources import AgentPlaybookSourceOperations
from reflexio_store.store.agent_playbooks import AgentPlaybookOperations
from reflexio_store.store.change_logs import ChangeLogOperations
from reflexio_store.store.evaluations import EvaluationOperations
from reflexio_store.store.operation_state import OperationStateOperations
from reflexio_store.store.optimization import OptimizationOperations
from reflexio_store.store.organizations import OrganizationOperations
from reflexio_store.store.profiles import ProfileOperations
from reflexio_store.store.requests import RequestOperations
from reflexio_store.store.retention import RetentionOperations
from reflexio_store.store.search import SearchOperations
from reflexio_store.store.share_links import ShareLinkOperations
from reflexio_store.store.user_playbooks import UserPlaybookOperations
from reflexio_store.store.workflow import WorkflowOperations
from reflexio_store.validation import choice
from reflexio_store.worker_threads import run_in_worker

log = logging.getLogger(__name__)


class _Operations(
    RequestOperations,
    ProfileOperations,
    UserPlaybookOperations,
    AgentPlaybookOperations,
    AgentPlaybookSourceOperations,
    RetentionOperations,
    SearchOperations,
    EvaluationOperations,
    ChangeLogOperations,
    OptimizationOperations,
    ShareLinkOperations,
    OperationStateOperations,
    OrganizationOperations,
    WorkflowOperations,
):
    """Every store operation; each mixin lives in its own module."""


def _consistency(
    op: Operation[Any, Any], kwargs: dict[str, Any]
) -> tuple[Consistency, dict[str, Any]]:
    """The consistency a read asks for, and the arguments left for the function: the route
    consumes `consistency` (kwargs itself is left as it was, so a retry can reuse it)."""
    if op.route == "fresh":
        return "strong", kwargs
    rest = dict(kwargs)
    value = choice(rest.pop("consistency", "eventual"), ("eventual", "strong"), "consistency")
    return ("strong" if value == "strong" else "eventual"), rest


class _StoreBase:
    def __init__(self, factory: SessionFactory | None = None) -> None:
        self.factory = factory if factory is not None else get_session_factory()

    @classmethod
    def from_config(cls, config: StorageConfig | None = None) -> Any:
        return cls(get_session_factory(config))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.factory!r})"


def run_operation(
    factory: SessionFactory, op: Operation[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Run one operation on the session (or connection) its route asks for.

    The one route for `Store` and `AsyncStore` alike: whatever a route learns (retries, error
    translation) belongs here, so both classes behave the same."""
    if op.connection:
        with factory.one_statement() as statement:
            return op.fn(statement, *args, **kwargs)
    if op.route == "write":
        with factory.writer() as session:
            return op.fn(session, *args, **kwargs)
    consistency, rest = _consistency(op, kwargs)
    # A replica that breaks mid-read costs a re-run of the read on the primary, not a failure.
    return run_read(factory, consistency, op.fn, args, rest)


class Store(_StoreBase, _Operations):
    """Synchronous store. Every method opens (and closes) its own session on the right engine."""

    def _bind(self, op: Operation[Any, Any]) -> Callable[..., Any]:
        factory = self.factory

        def call(*args: Any, **kwargs: Any) -> Any:
            return run_operation(factory, op, args, kwargs)

        call.__name__ = op.name
        call.__doc__ = op.fn.__doc__
        call.__signature__ = op.signature  # type: ignore[attr-defined]
        return call


class AsyncStore(_StoreBase, _Operations):
    """The same operations for asyncio: `await store.add_profiles(...)`.

    Each call runs the whole operation on a worker thread (reflexio_store.worker_threads: the
    most recently idle thread takes it, as a warm thread answers fastest) through the same route
    and the same bounded sync pools as `Store`: one thread hop per operation instead of one per
    statement (aiosqlite) or a greenlet switch per statement (SQLAlchemy's asyncio layer), and
    never more connections than the pool sizes.

    On SQLite, workflow `save_state` and `load_state` (one statement each) run on the event
    loop's own thread when they cannot wait: an idle pooled connection, busy_timeout 0, and a
    worker thread after all if the file is locked (reflexio_store.inline_sqlite). The hop costs
    several times the statement. Each such call still gives the loop a turn before it returns.
    `inline_sqlite=False` sends every call to a worker thread.

    Cancelling the awaiting task does not interrupt a running operation: it commits or rolls
    back on its thread as it would have, and the result is dropped.
    """

    def __init__(
        self, factory: SessionFactory | None = None, *, inline_sqlite: bool = True
    ) -> None:
        super().__init__(factory)
        self.inline_sqlite = inline_sqlite

    def _bind(self, op: Operation[Any, Any]) -> Callable[..., Any]:
        factory = self.factory
        inline = self.inline_sqlite and op.connection

        async def call(*args: Any, **kwargs: Any) -> Any:
            if inline:
                result = run_inline(factory, op, args, kwargs)
                if result is not NOT_RUN:
                    await _after_inline(factory)
                    return result
            return await run_in_worker(run_operation, factory, op, args, kwargs)

        call.__name__ = op.name
        call.__doc__ = op.fn.__doc__
        call.__signature__ = op.signature  # type: ignore[attr-defined]
        return call


async def _after_inline(factory: SessionFactory) -> None:
    """What an inline call owes the loop and the file: a turn for the loop's other tasks (a
    coroutine awaiting inline calls in a loop would otherwise never let them run), and every
    CHECKPOINT_EVERY writes a passive WAL checkpoint on a worker thread."""
    if checkpoint_due(factory):
        try:
            await run_in_worker(checkpoint, factory)
        except Exception as exc:  # the write is committed; the next checkpoint catches up
            log.warning(
                "A passive WAL checkpoint after inline writes failed (%s); SQLite's "
                "autocheckpoint on the next pooled write, or the next one here, catches up.",
                type(exc).__name__,
            )
        return
    await asyncio.sleep(0)
