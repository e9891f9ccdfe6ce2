"""SQLite: an in-process vector index for searches that are not narrowed by an indexed filter.

sqlite-vec's exact scan costs about 1.3 us a row in SQL (100 ms and more at 100k rows), and a
float32 matrix product in numpy is bound by memory bandwidth (205 MB per 100k x 512; 60 to
130 ms on this shared 2-core machine). This index is a usearch HNSW graph over int8-quantized
vectors (about 60 MB per 100k x 512) that hands the engine the nearest candidates; the engine
then re-ranks them exactly in SQL (vec_distance_cosine) with every filter and the threshold, so
the index only decides which rows are looked at, never what a row scores.

Coherence with the file, including writes by other processes: triggers (revision 0005) append
the key of every inserted, re-embedded or deleted row to `vector_changes` in the writing
transaction. The index remembers the last change it has applied (`seq`); before serving, a
search reads the newest change in its own snapshot (one indexed probe) and:

- index up to date: serve from the index;
- a few changes behind (<= CATCH_UP_LIMIT): apply them now from the search's own transaction
  (re-read those rows), then serve;
- cold, far behind, or the change log was pruned past the index's position: start a rebuild in
  a background thread and answer this search with the exact scan.

A stale index is never served. In-memory databases have no index (every search is exact).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Engine, bindparam, text
from sqlalchemy.engine import Connection

EXPANSION_SEARCH = 256
"""HNSW search breadth (usearch's ef): recall of the candidates against exact search."""
EXACT_FRACTION = 4
"""Requests for at least 1/EXACT_FRACTION of the indexed rows are answered by a brute-force
pass over the index instead of a graph walk."""
REBUILD_MIN_REMOVED = 1_000
"""A graph is rebuilt aside once more than this many rows, and a fifth of its size, were removed."""
CATCH_UP_LIMIT = 5_000
"""Changes applied synchronously by a search; more trigger a background rebuild."""

FloatMatrix = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Candidates:
    """Keys nearest first, their similarity by the index, and whether no other row is left."""

    keys: list[int]
    similarities: list[float]
    exhausted: bool


def _new_usearch(dimensions: int) -> Any:
    from usearch.index import Index

    # int8 vectors (a quarter of float32) in an HNSW graph; the engine re-ranks exactly.
    return Index(
        ndim=dimensions,
        metric="cos",
        dtype="i8",
        connectivity=16,
        expansion_add=128,
        expansion_search=EXPANSION_SEARCH,
    )


@dataclass
class _Index:
    dimensions: int
    graph: Any = None
    seq: int = -1
    """The last change applied; -1 while cold."""
    building: bool = False
    removed: int = 0
    """Rows removed from the graph since it was built: removals leave HNSW less connected."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def apply(self, rows: list[tuple[int, bytes | None]], removed: list[int]) -> None:
        """Set the embedding of each (key, blob) row (None: no embedding) and drop `removed`.
        Called with the lock held."""
        if self.graph is None:
            self.graph = _new_usearch(self.dimensions)
        graph = self.graph
        gone = [k for k in (*removed, *(k for k, _ in rows)) if graph.contains(k)]
        if gone:
            graph.remove(np.asarray(gone, dtype=np.uint64))
            self.removed += len(gone)
        keys: list[int] = []
        vectors: list[FloatMatrix] = []
        for key, blob in rows:
            if blob is None or len(blob) != 4 * self.dimensions:
                continue
            vector = np.frombuffer(blob, dtype=np.float32)
            if np.isfinite(vector).all() and float(np.dot(vector, vector)) > 0:
                keys.append(key)
                vectors.append(vector)
        if keys:
            graph.add(np.asarray(keys, dtype=np.uint64), np.vstack(vectors), threads=1)

    def nearest(self, query: FloatMatrix, count: int) -> Candidates:
        """The `count` rows most similar to `query` (approximately), best first."""
        with self.lock:
            graph = self.graph
            if graph is None or len(graph) == 0:
                return Candidates([], [], exhausted=True)
            size = len(graph)
            count = min(count, size)
            # Asked for most of the graph: HNSW walks may miss nodes (more so after removals),
            # and a brute-force pass over int8 vectors is as cheap at that size.
            matches = graph.search(query, count, exact=count * EXACT_FRACTION >= size)
        keys = [int(k) for k in matches.keys]
        return Candidates(
            keys=keys,
            similarities=[1.0 - float(d) for d in matches.distances],
            # Only a pass that returned every row may say no other row is left.
            exhausted=len(keys) >= size,
        )

    @property
    def nbytes(self) -> int:
        return 0 if self.graph is None else int(self.graph.memory_usage)


_indexes: dict[tuple[str, str], _Index] = {}
_registry_lock = threading.Lock()


def _database_file(connection: Connection) -> str | None:
    database = connection.engine.url.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        return None
    return os.path.realpath(database)


def _latest_change(connection: Connection, table: str) -> tuple[int, int]:
    """(newest seq, oldest seq) of `table`'s changes in this snapshot; (0, 0) when none."""
    row = connection.execute(
        text(
            "SELECT coalesce(max(seq), 0), coalesce(min(seq), 0) FROM vector_changes "
            "WHERE table_name = :t"
        ),
        {"t": table},
    ).one()
    return int(row[0]), int(row[1])


def _read_rows(connection: Connection, table: str, key: str, keys: list[int] | None) -> Any:
    sql = f"SELECT {key}, embedding FROM {table}"  # noqa: S608 - names come from the models
    if keys is None:
        return connection.execute(text(sql))
    stmt = text(sql + f" WHERE {key} IN :keys").bindparams(bindparam("keys", expanding=True))
    return connection.execute(stmt, {"keys": keys})


def _rebuild(engine: Engine, table: str, key: str, index_key: tuple[str, str]) -> None:
    """Read every embedding in one snapshot and swap the new index in."""
    index = _indexes[index_key]
    try:
        with engine.connect() as connection:
            seq, _ = _latest_change(connection, table)
            keys, vectors = [], []
            for k, blob in _read_rows(connection, table, key, None):
                if blob is not None and len(blob) == 4 * index.dimensions:
                    keys.append(int(k))
                    vectors.append(np.frombuffer(blob, dtype=np.float32))
        graph = _new_usearch(index.dimensions)
        if keys:
            matrix = np.vstack(vectors)
            usable = np.isfinite(matrix).all(axis=1) & (np.einsum("ij,ij->i", matrix, matrix) > 0)
            ids, matrix = np.asarray(keys, dtype=np.uint64)[usable], matrix[usable]
            for start in range(0, len(ids), BUILD_CHUNK):
                if _stopping.is_set():
                    return  # the interpreter is exiting: leave the index cold
                end = start + BUILD_CHUNK
                graph.add(ids[start:end], matrix[start:end], threads=2)
        with index.lock:
            index.graph, index.seq, index.removed = graph, seq, 0
    finally:
        index.building = False


def _start_rebuild(engine: Engine, table: str, key: str, index_key: tuple[str, str]) -> None:
    index = _indexes[index_key]
    with index.lock:
        if index.building:
            return
        index.building = True
    builder = threading.Thread(
        target=_rebuild,
        args=(engine, table, key, index_key),
        name=f"reflexio-vector-index-{table}",
        daemon=True,
    )
    _builders.add(builder)
    builder.start()


BUILD_CHUNK = 8192
"""Rows added to a graph per usearch call while rebuilding; exit waits for at most one chunk."""
_stopping = threading.Event()
_builders: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@atexit.register
def _finish_builds() -> None:
    """Stop rebuilds between chunks and wait for them before the interpreter exits.

    usearch adds vectors on its own C++ threads; a process that exits while they run aborts
    ("terminate called without an active exception", exit status 134)."""
    _stopping.set()
    for builder in list(_builders):
        builder.join(timeout=60)


def _usearch_available() -> bool:
    global _usearch_checked
    if _usearch_checked is None:
        try:
            import usearch.index  # noqa: F401
        except ImportError:
            _usearch_checked = False
        else:
            _usearch_checked = True
    return _usearch_checked


_usearch_checked: bool | None = None
enabled = True
"""False: every search scans exactly (the benchmark's baseline)."""


def candidates(
    connection: Connection,
    table: str,
    key: str,
    dimensions: int,
    query: FloatMatrix,
    count: int,
) -> Candidates | None:
    """The keys of the `count` rows nearest to `query` (unit length), from an index that has
    every change visible to `connection`'s snapshot; None when no such index is ready (the
    caller scans exactly)."""
    database = _database_file(connection)
    if database is None or not enabled or not _usearch_available():
        return None
    index_key = (database, table)
    with _registry_lock:
        index = _indexes.get(index_key)
        if index is None or index.dimensions != dimensions:
            index = _indexes[index_key] = _Index(dimensions)
    latest, oldest = _latest_change(connection, table)
    if index.seq < 0 or index.seq < oldest - 1 or latest - index.seq > CATCH_UP_LIMIT:
        # Cold, or behind a pruned log, or far behind: rebuild aside, exact scan meanwhile.
        _start_rebuild(connection.engine, table, key, index_key)
        return None
    if latest > index.seq:
        changed = connection.execute(
            text(
                "SELECT DISTINCT row_key FROM vector_changes "
                "WHERE table_name = :t AND seq > :after AND seq <= :upto"
            ),
            {"t": table, "after": index.seq, "upto": latest},
        ).scalars()
        keys = [int(k) for k in changed]
        rows = [(int(k), b) for k, b in _read_rows(connection, table, key, keys)]
        present = {k for k, _ in rows}
        with index.lock:
            if index.seq < latest:
                index.apply(rows, [k for k in keys if k not in present])
                index.seq = latest
            worn = index.removed > max(REBUILD_MIN_REMOVED, len(index.graph) // 5)
        if worn:
            # Keep serving the worn graph (still exact-reranked) while a fresh one is built.
            _start_rebuild(connection.engine, table, key, index_key)
    return index.nearest(query, count)


def memory_bytes(database: str, table: str) -> int:
    """Bytes held by the index of `table` in the SQLite file `database` (0 when none)."""
    index = _indexes.get((os.path.realpath(database), table))
    return 0 if index is None else index.nbytes


def is_ready(database: str, table: str) -> bool:
    index = _indexes.get((os.path.realpath(database), table))
    return index is not None and index.seq >= 0 and not index.building


def forget_all() -> None:
    """Drop every index (tests, benchmarks)."""
    with _registry_lock:
        _indexes.clear()
