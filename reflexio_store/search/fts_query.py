"""Turning arbitrary user text into a full-text query with one meaning on both databases.

Semantics: a query is the set of its terms, OR-ed and ranked (bm25 on SQLite, ts_rank_cd on
PostgreSQL). A term is a run of letters and digits; every other character (`/`, `-`, `+`, `'`,
quotes, operators, emoji, NUL) separates terms and has no other meaning, so `-dark` searches for
"dark" and `"dark mode"` for "dark" or "mode". English stop words are left out of the query
unless it has nothing else. Both databases then fold case and Latin diacritics and stem each
term with the Porter algorithm, the same way they treat stored text: SQLite through FTS5's
`porter unicode61` tokenizer, PostgreSQL through `reflexio_fts_document` (revision 0004), which
splits, folds and stems as FTS5 does. Stored text keeps every word.

SQLite FTS5 gives meaning to quotes, `*`, `^`, `:`, parentheses, NEAR, AND/OR/NOT and column
filters; each term is quoted as an FTS5 string, so user text is never FTS5 syntax.
"""

from __future__ import annotations

import re

MAX_TERMS = 64
"""Most distinct terms kept from one query; longer queries keep their first MAX_TERMS terms."""
MAX_QUERY_CHARS = 10_000
"""Only the first MAX_QUERY_CHARS characters of a query are read."""

_TOKEN = re.compile(r"[^\W_]+")

# English stop words (Snowball's english.stop), left out of queries on both databases unless the
# query has nothing else: words present in nearly every row ("the", "a", "is") would otherwise
# make every row a match.
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
    for match in _TOKEN.finditer(text[:MAX_QUERY_CHARS]):
        term = match.group(0).lower()
        if term not in seen:
            seen[term] = None
            if len(seen) >= MAX_TERMS:
                break
    return list(seen)


def search_terms(text: str | None) -> list[str]:
    """The terms searched for: query_terms without English stop words (all of them when the
    query has nothing else). The same list is sent to both databases."""
    terms = query_terms(text)
    return [t for t in terms if t not in STOP_WORDS] or terms


def fts5_query(text: str | None) -> str | None:
    """An FTS5 MATCH expression: the search terms of `text`, each quoted, joined with OR.

    None when `text` has no letters or digits at all (nothing to search for).
    """
    terms = search_terms(text)
    if not terms:
        return None
    # Terms hold only letters and digits, so they contain no quote to escape.
    return " OR ".join(f'"{term}"' for term in terms)


def postgres_query(text: str | None) -> str | None:
    """The search terms of `text` separated by spaces, for reflexio_fts_document (which splits,
    folds and stems them as it does stored text); None when nothing searchable is left."""
    terms = search_terms(text)
    return " ".join(terms) if terms else None
