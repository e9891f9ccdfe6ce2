"""PostgreSQL: a document too large for one tsvector is indexed up to the limit, not refused

A tsvector holds at most 1 MB of lexemes and positions. A row whose searched text has more
distinct words than that (a long log, a hex dump, many ids) was refused by PostgreSQL with
"string is too long for tsvector", while SQLite's FTS5 stored and indexed it: the same write
succeeded on one database and failed on the other. Now `reflexio_fts_document` indexes the
words in document order while they fit (each word's first occurrence counted as its length plus
5 bytes of entry, alignment and position; each later one as a 2-byte position), and leaves the
rest of the document unindexed. The row is stored whole either way.

A document of at most FAST_BYTES bytes cannot reach the limit (a lexeme costs at most 3 bytes a
byte of text: one-letter words, lowercased up to 1.5x), so it runs revision 0004's statement
unchanged and gets the same tsvector as before. Stored rows keep theirs (none was over the
limit: such a row was refused), so nothing is rewritten. The function is now PL/pgSQL, which
runs only the branch a document needs (measured 0.21-0.23 ms a profile against 0.23-0.25 ms
before).

SQLite: nothing to do.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FAST_BYTES = 300_000
"""Documents up to this size are indexed without counting (3 x this is under 1 MB)."""
BUDGET_BYTES = 1_000_000
"""Estimated tsvector bytes a longer document may use (PostgreSQL's limit: 1,048,575)."""


def _revision_0004() -> ModuleType:
    """Revision 0004 (its fold table and document function), loaded from its file beside this
    one: a revision is never edited, so reading it is reading a constant."""
    path = Path(__file__).with_name("0004_portable_text_search.py")
    spec = importlib.util.spec_from_file_location("reflexio_store_revision_0004", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Revision 0004's word list: (n, lexeme) for every word of `doc`, in order.
WORDS = """
SELECT n,
    CASE
        WHEN octet_length(w) < 3 OR octet_length(w) > 64 THEN w
        WHEN st ~ '[aeiou][^aeiou].*bli$'
            THEN (ts_lexize('reflexio_porter'::regdictionary, left(st, -1) || 'e'))[1]
        WHEN st ~ '[aeiou][^aeiou].*logi$' THEN left(st, -1)
        ELSE st
    END AS lexeme
FROM regexp_split_to_table(lower(translate(doc, '{fold_from}', '{fold_to}')), '[^[:alnum:]]+')
    WITH ORDINALITY AS words(w, n)
CROSS JOIN LATERAL (
    SELECT (ts_lexize('reflexio_porter'::regdictionary, w))[1] AS st
) AS stems
WHERE w <> ''
"""

# PL/pgSQL so that a short document runs revision 0004's statement alone: one SQL function
# holding both branches cost about twice as much a document, its executor started every plan
# node (window, sort) for every row.
DOCUMENT_FUNCTION = f"""
CREATE OR REPLACE FUNCTION reflexio_fts_document(doc text) RETURNS tsvector
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path FROM CURRENT
AS $$
BEGIN
    IF octet_length(doc) <= {FAST_BYTES} THEN
        RETURN (
            SELECT to_tsvector('pg_catalog.simple'::regconfig,
                               coalesce(string_agg(lexeme, ' ' ORDER BY n), ''))
            FROM ({{words}}) AS words
        );
    END IF;
    RETURN (
        SELECT to_tsvector('pg_catalog.simple'::regconfig,
                           coalesce(string_agg(lexeme, ' ' ORDER BY n), ''))
        FROM (
            SELECT n, lexeme, sum(cost) OVER (ORDER BY n) AS used
            FROM (
                SELECT n, lexeme,
                    CASE row_number() OVER (PARTITION BY lexeme ORDER BY n)
                        WHEN 1 THEN octet_length(lexeme) + 5
                        ELSE 2
                    END AS cost
                FROM ({{words}}) AS words
            ) AS costed
        ) AS counted
        WHERE used <= {BUDGET_BYTES}
    );
END
$$
"""


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    portable = _revision_0004()
    words = WORDS.format(fold_from=portable.FOLD_FROM, fold_to=portable.FOLD_TO)
    op.execute(DOCUMENT_FUNCTION.format(words=words))


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return
    portable = _revision_0004()
    before = portable.DOCUMENT_FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    op.execute(before.format(fold_from=portable.FOLD_FROM, fold_to=portable.FOLD_TO))
