"""AsyncStore's worker threads: results, errors and context come back; a warm thread is reused;
no more than the limit run at once; a cancelled caller does not stop the call or the worker."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from reflexio_store import worker_threads
from reflexio_store.worker_threads import run_in_worker

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")


@pytest.fixture
def two_workers(monkeypatch: pytest.MonkeyPatch) -> worker_threads._Workers:
    pool = worker_threads._Workers(2)
    monkeypatch.setattr(worker_threads, "_workers", pool)
    return pool


async def test_result_error_and_context_come_back(two_workers: worker_threads._Workers) -> None:
    assert await run_in_worker(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(KeyError, match="missing"):
        await run_in_worker({}.__getitem__, "missing")
    request_id.set("r-42")
    assert await run_in_worker(request_id.get) == "r-42"


async def test_sequential_calls_stay_on_one_warm_thread(
    two_workers: worker_threads._Workers,
) -> None:
    threads = {await run_in_worker(threading.get_ident) for _ in range(50)}
    assert len(threads) == 1
    assert two_workers.started == 1


async def test_never_more_than_the_limit_at_once(two_workers: worker_threads._Workers) -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def hold(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(30)
        with lock:
            running -= 1
        return i

    calls = [asyncio.ensure_future(run_in_worker(hold, i)) for i in range(7)]
    while True:  # both workers busy, five calls waiting in order
        with lock:
            if running == 2:
                break
        await asyncio.sleep(0.001)
    assert len(two_workers.backlog) == 5
    release.set()
    assert await asyncio.gather(*calls) == list(range(7))
    assert peak == 2
    assert two_workers.started == 2


async def test_a_cancelled_caller_leaves_the_call_and_the_worker_running(
    two_workers: worker_threads._Workers,
) -> None:
    started, finished = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        time.sleep(0.05)
        finished.set()
        return "done"

    task = asyncio.ensure_future(run_in_worker(slow))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(finished.wait, 10)
    assert await run_in_worker(lambda: "next") == "next"
