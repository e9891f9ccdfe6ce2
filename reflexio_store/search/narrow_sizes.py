"""How many rows a narrowing filter (one user's rows) selected, remembered for a short while.

A user-filtered PostgreSQL search chooses between an exact scan of the user's rows and an HNSW
walk by counting those rows inside its statement (search.postgres: both plans are in the
statement and a one-time filter runs one). Every such search therefore plans both branches and
counts. Once a search has counted a user well below the bound (at most half of it), the same
user's searches send the exact plan alone for KNOWN_FOR_SECONDS: measured at 5,000 profiles of
100 a user, p50 3.7-3.9 ms -> 2.6-2.7 ms, identical results.

A stale entry can only cost time, never change a result: the exact plan is exact for any number
of rows (every vector of the user scanned, every text match ranked); the walk is the approximate
path. A user who grows past the bound meanwhile is scanned exactly until the entry expires.
Keys name the database, the schema and the filter's values, so organizations never share one.
Only the key's 64-bit hash is kept (about 100 bytes an entry): two keys with one hash would share
an entry, which, as a stale one, costs at most time.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable

_MORE_THAN_ANY_BOUND = 2**62
KNOWN_FOR_SECONDS = 30.0
"""How long a counted size is trusted."""
MAX_KNOWN = 10_000
"""Sizes kept (least recently used dropped first)."""

_clock = time.monotonic
_known: OrderedDict[int, tuple[int, float]] = OrderedDict()
_lock = threading.Lock()


def remember(key: Hashable, rows: int, cap: int) -> None:
    """The narrowing filter of `key` selected `rows` rows, counted up to `cap`. A count that
    reached its cap says only "at least cap", and a search's cap follows its own branches (a
    text search counts less far than a vector search), so it is kept as larger than any bound."""
    if rows >= cap:
        rows = _MORE_THAN_ANY_BOUND
    now = _clock()
    with _lock:
        _known[hash(key)] = (rows, now)
        _known.move_to_end(hash(key))
        # Oldest first (each remember moves its entry to the end): expired ones go at once.
        while _known and (
            len(_known) > MAX_KNOWN or now - next(iter(_known.values()))[1] > KNOWN_FOR_SECONDS
        ):
            _known.popitem(last=False)


def known_small(key: Hashable, bound: int) -> bool:
    """True when `key` was counted at most bound / 2 rows within KNOWN_FOR_SECONDS."""
    with _lock:
        found = _known.get(hash(key))
    if found is None:
        return False
    rows, when = found
    return rows * 2 <= bound and _clock() - when <= KNOWN_FOR_SECONDS


def forget_all() -> None:
    with _lock:
        _known.clear()
