"""Turning arbitrary user text into a full-text query that can never be a syntax error.

SQLite FTS5 gives meaning to quotes, `*`, `^`, `:`, parentheses, NEAR, AND/OR/NOT and column
filters; user text reaching MATCH unsanitised raises "fts5: syntax error". We keep only runs of
letters and digits, quote each one as an FTS5 string and OR them together, so every query is a
plain disjunction of terms ranked by bm25. PostgreSQL's websearch_to_tsquery accepts any text;
there we only remove NUL characters and lone surrogates, which the driver cannot send.
"""

from __future__ import annotations

import re

MAX_TERMS = 64
"""Most distinct terms kept from one query; longer queries keep their first MAX_TERMS terms."""
MAX_QUERY_CHARS = 10_000
"""Longest PostgreSQL query text sent (websearch_to_tsquery cost grows with the text)."""

_TOKEN = re.compile(r"[^\W_]+")

# PostgreSQL's 'english' stop words (snowball english.stop): websearch_to_tsquery drops them, and
# so does the SQLite query, unless the query has nothing else. Besides matching PostgreSQL, this
# keeps words present in nearly every row ("the", "a", "is") from making bm25 rank every row.
STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom this
    that these those am is are was were be been being have has had having do does did doing a an
    the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then
    once here there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don should now""".split()  # noqa: SIM905
)


def query_terms(text: str | None) -> list[str]:
    """Distinct runs of letters/digits of `text`, in order of first appearance, lower-cased."""
    if not text:
        return []
    seen: dict[str, None] = {}
    for match in _TOKEN.finditer(text):
        term = match.group(0).lower()
        if term not in seen:
            seen[term] = None
            if len(seen) >= MAX_TERMS:
                break
    return list(seen)


def fts5_query(text: str | None) -> str | None:
    """An FTS5 MATCH expression: the terms of `text`, each quoted, joined with OR. English stop
    words are left out when other terms remain.

    None when `text` has no letters or digits at all (nothing to search for).
    """
    terms = query_terms(text)
    if not terms:
        return None
    terms = [t for t in terms if t not in STOP_WORDS] or terms
    # Terms hold only letters and digits, so they contain no quote to escape.
    return " OR ".join(f'"{term}"' for term in terms)


def postgres_query(text: str | None) -> str | None:
    """Text for websearch_to_tsquery: NUL removed, None when nothing searchable is left."""
    if not text:
        return None
    # NUL and lone surrogates cannot be sent to the server; drop them.
    cleaned = text[:MAX_QUERY_CHARS].replace("\x00", " ").encode("utf-8", "ignore").decode("utf-8")
    if not _TOKEN.search(cleaned):
        return None
    return cleaned
