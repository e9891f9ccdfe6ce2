"""Worker threads for AsyncStore: run a blocking call and await its result from asyncio.

`asyncio.to_thread` hands each call to whichever thread of the loop's default executor wakes
first, so successive calls of one coroutine hop between threads (and cores); measured on a
SQLite `load_state` of about 80 us, to_thread added about 100 us a call where a thread that stays
warm adds about 40. Here the most recently idle thread takes the next call (a stack of idle
workers), a new thread starts only when every worker is busy, and at most MAX_WORKERS run: more
calls wait in order. Threads are daemons and live for the process, like the default executor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import threading
from collections import deque
from collections.abc import Callable
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")

MAX_WORKERS = min(32, (os.cpu_count() or 1) + 4)
"""As the default executor of asyncio: blocking calls beyond this many wait in order."""

_Job = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]


def _deliver(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return  # the caller stopped waiting; the call itself ran to its end
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Worker:
    def __init__(self, pool: _Workers) -> None:
        self.jobs: SimpleQueue[_Job] = SimpleQueue()
        self.pool = pool

    def run(self) -> None:
        job = self.jobs.get()
        while True:
            loop, future, call = job
            result: Any = None
            error: BaseException | None = None
            try:
                result = call()
            except BaseException as exc:  # delivered to the awaiting coroutine
                error = exc
            # Idle again before the caller hears back, so its next call finds this warm thread.
            following = self.pool.next_job(self)
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting
                loop.call_soon_threadsafe(_deliver, future, result, error)
            del result, error, call, future
            job = following if following is not None else self.jobs.get()


class _Workers:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.idle: list[_Worker] = []
        self.backlog: deque[_Job] = deque()
        self.started = 0

    def submit(self, job: _Job) -> None:
        with self.lock:
            if self.idle:
                self.idle.pop().jobs.put(job)
                return
            if self.started >= self.limit:
                self.backlog.append(job)
                return
            self.started += 1
        worker = _Worker(self)
        worker.jobs.put(job)
        threading.Thread(
            target=worker.run, name=f"reflexio-store-worker-{self.started}", daemon=True
        ).start()

    def next_job(self, worker: _Worker) -> _Job | None:
        """The oldest waiting call, or None after `worker` was put back on the idle stack."""
        with self.lock:
            if self.backlog:
                return self.backlog.popleft()
            self.idle.append(worker)
            return None


_workers = _Workers(MAX_WORKERS)


async def run_in_worker(fn: Callable[..., T], /, *args: Any) -> T:
    """`fn(*args)` on a worker thread, in a copy of the caller's context (as asyncio.to_thread)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    context = contextvars.copy_context()
    _workers.submit((loop, future, lambda: context.run(fn, *args)))
    return await future
