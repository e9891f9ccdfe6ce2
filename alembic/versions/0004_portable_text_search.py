"""PostgreSQL: full text split, folded and stemmed the way SQLite's FTS5 does it

Before this revision PostgreSQL indexed `to_tsvector('english', ...)`: its parser keeps
`Europe/Berlin` or `e-mail` as one token, drops English stop words, and stems with Snowball
English, while SQLite's FTS5 (`porter unicode61`) splits on every character that is not a letter
or digit, keeps stop words and stems with the original Porter algorithm; the same query found
different rows on the two databases. Now each searched column is indexed by
`reflexio_fts_document(text)`, a SQL function created here that does what FTS5 does:

- split on every run of characters that are not letters or digits (`[^[:alnum:]]+`);
- fold case, and fold Latin letters with diacritics as FTS5's unicode61 does (`translate` with
  the table below, taken from FTS5 itself);
- stem with Snowball's `porter` (the original Porter algorithm), leaving tokens shorter than 3
  or longer than 64 bytes alone and applying the two rules FTS5's Porter has in addition
  (`bli` -> `ble`, `logi` -> `log`), as FTS5 does;
- keep every word (no stop-word list).

Queries are turned into lexemes by the same function (reflexio_store.search.sql), so a query and
a document are always split and stemmed alike. Every searched table's generated `search_vector`
column is recomputed (the table is rewritten) and its GIN index rebuilt. SQLite: nothing to do.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FULLTEXT: dict[str, tuple[str, ...]] = {
    "interactions": ("content",),
    "profiles": ("content", "expanded_terms"),
    "user_playbooks": ("content", "trigger", "expanded_terms"),
    "agent_playbooks": ("content", "trigger", "expanded_terms"),
}

# Latin letters with diacritics and the ASCII letter FTS5's unicode61 tokenizer folds each to
# (read from FTS5: each character indexed alone, its term taken from fts5vocab).
FOLD_FROM = (
    "ÀÁÂÃÄÅàáâãäåĀāĂăĄąǍǎȀȁȂȃȦȧḀḁẠạẢảḂḃḄḅḆḇÇç"
    "ĆćĈĉĊċČčĎďḊḋḌḍḎḏḐḑḒḓÈÉÊËèéêëĒēĔĕĖėĘęĚěȄȅ"
    "ȆȇȨȩḘḙḚḛẸẹẺẻẼẽḞḟĜĝĞğĠġĢģǦǧǴǵḠḡĤĥȞȟḢḣḤḥḦḧ"
    "ḨḩḪḫẖÌÍÎÏìíîïĨĩĪīĬĭĮįİǏǐȈȉȊȋḬḭỈỉỊịĴĵǰĶķǨ"
    "ǩḰḱḲḳḴḵĹĺĻļĽľḶḷḺḻḼḽḾḿṀṁṂṃÑñŃńŅņŇňǸǹṄṅṆṇṈ"
    "ṉṊṋÒÓÔÕÖòóôõöŌōŎŏŐőƠơǑǒǪǫȌȍȎȏȮȯỌọỎỏṔṕṖṗŔ"
    "ŕŖŗŘřȐȑȒȓṘṙṚṛṞṟŚśŜŝŞşŠšſȘșṠṡṢṣẛŢţŤťȚțṪṫṬ"
    "ṭṮṯṰṱẗÙÚÛÜùúûüŨũŪūŬŭŮůŰűŲųƯưǓǔȔȕȖȗṲṳṴṵṶṷ"
    "ỤụỦủṼṽṾṿŴŵẀẁẂẃẄẅẆẇẈẉẘẊẋẌẍÝýÿŶŷŸȲȳẎẏẙỲỳỴỵ"
    "ỶỷỸỹŹźŻżŽžẐẑẒẓẔẕ"
)
FOLD_TO = (
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaabbbbbbcc"
    "ccccccccddddddddddddeeeeeeeeeeeeeeeeeeee"
    "eeeeeeeeeeeeeeffgggggggggggggghhhhhhhhhh"
    "hhhhhiiiiiiiiiiiiiiiiiiiiiiiiiiiiijjjkkk"
    "kkkkkkkllllllllllllmmmmmmnnnnnnnnnnnnnnn"
    "nnnooooooooooooooooooooooooooooooooppppr"
    "rrrrrrrrrrrrrrrssssssssssssssssttttttttt"
    "ttttttuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu"
    "uuuuvvvvwwwwwwwwwwwwwxxxxyyyyyyyyyyyyyyy"
    "yyyyzzzzzzzzzzzz"
)

assert len(FOLD_FROM) == len(FOLD_TO)

DOCUMENT_FUNCTION = """
CREATE FUNCTION reflexio_fts_document(doc text) RETURNS tsvector
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
-- The schema this migration runs in (where the dictionary is), whoever calls the function.
SET search_path FROM CURRENT
AS $$
SELECT to_tsvector('pg_catalog.simple'::regconfig, coalesce(string_agg(
    CASE
        WHEN octet_length(w) < 3 OR octet_length(w) > 64 THEN w
        WHEN st ~ '[aeiou][^aeiou].*bli$'
            THEN (ts_lexize('reflexio_porter'::regdictionary, left(st, -1) || 'e'))[1]
        WHEN st ~ '[aeiou][^aeiou].*logi$' THEN left(st, -1)
        ELSE st
    END, ' ' ORDER BY n), ''))
FROM regexp_split_to_table(lower(translate(doc, '{fold_from}', '{fold_to}')), '[^[:alnum:]]+')
    WITH ORDINALITY AS words(w, n)
CROSS JOIN LATERAL (
    SELECT (ts_lexize('reflexio_porter'::regdictionary, w))[1] AS st
) AS stems
WHERE w <> ''
$$
"""


def _is_pg() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _source(columns: tuple[str, ...]) -> str:
    return " || ' ' || ".join(f"coalesce({c}, '')" for c in columns)


def _replace_columns(expression: str) -> None:
    for table, columns in FULLTEXT.items():
        op.execute(f"DROP INDEX IF EXISTS ix_{table}_search_vector")
        op.execute(f"ALTER TABLE {table} DROP COLUMN search_vector")
        op.execute(
            f"ALTER TABLE {table} ADD COLUMN search_vector tsvector "
            f"GENERATED ALWAYS AS ({expression.format(source=_source(columns))}) STORED"
        )
        op.execute(
            f"CREATE INDEX ix_{table}_search_vector ON {table} "
            "USING gin (search_vector) WITH (fastupdate = off)"
        )


def upgrade() -> None:
    if not _is_pg():
        return
    op.execute(
        "CREATE TEXT SEARCH DICTIONARY reflexio_porter "
        "(TEMPLATE = pg_catalog.snowball, LANGUAGE = porter)"
    )
    op.execute(DOCUMENT_FUNCTION.format(fold_from=FOLD_FROM, fold_to=FOLD_TO))
    _replace_columns("reflexio_fts_document({source})")


def downgrade() -> None:
    if not _is_pg():
        return
    _replace_columns("to_tsvector('english'::regconfig, {source})")
    op.execute("DROP FUNCTION reflexio_fts_document(text)")
    op.execute("DROP TEXT SEARCH DICTIONARY reflexio_porter")
