"""The traces list's text search index: FTS5 trigrams of each trace's name, id, agents and models.

``search=`` matches a substring of any of those (``LIKE '%text%'``), which no b-tree index serves: at 5M spans the
scan of every trace took 0.3 s for a text that few or no traces hold. The trigram index names a rare text's traces
at once (``candidates``); the query then applies its own LIKE to them as before, so the index only has to hold a
superset of the matches. A common text (more traces than the query layer's few) is still found by walking the traces
in order, where matches come early. A SQLite built without FTS5's trigram tokenizer (before 3.34) keeps the scan.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence

__all__ = ["ensure_text_index", "index_traces", "unindex_traces", "candidates"]

logger = logging.getLogger("agentwatch.server")

#: One row's searchable text: the four columns the LIKE search reads, apart (a unit separator between them).
_TEXT = "name || char(31) || trace_id || char(31) || agents || char(31) || models"
_CHUNK = 500  # keys per statement, under SQLite's limit on bound parameters


def ensure_text_index(cursor: sqlite3.Cursor) -> bool:
    """Create the index in this transaction, filled from the traces stored so far (once per database file).
    False where this SQLite has no trigram tokenizer: the search then scans, as it always did."""
    try:
        if cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'trace_text'").fetchone():
            cursor.execute("SELECT 1 FROM trace_text LIMIT 0")  # made by a SQLite with the tokenizer: is it here?
            return True
        # detail=none, columnsize=0: trigrams only, no positions or sizes; the LIKE on ``traces`` decides.
        cursor.execute("CREATE VIRTUAL TABLE trace_text USING fts5(text, tokenize='trigram', detail='none',"
                       " columnsize=0)")
    except sqlite3.OperationalError as error:
        logger.info("agentwatch: SQLite %s has no FTS5 trigram tokenizer (%s); text search scans every trace",
                    sqlite3.sqlite_version, error)
        return False
    if cursor.execute("SELECT 1 FROM traces LIMIT 1").fetchone():
        logger.warning("agentwatch: indexing the stored traces for text search (once; ~20 s per million traces)")
    cursor.execute(f"INSERT INTO trace_text (rowid, text) SELECT tkey, {_TEXT} FROM traces")
    return True


def index_traces(cursor: sqlite3.Cursor, new: Sequence[int], known: Sequence[int]) -> None:
    """Index the ``new`` traces, and those of the ``known`` whose text a batch changed (a root that named its trace,
    a label added): rewriting a row's trigrams costs more than comparing its text. OR REPLACE: a row left behind by
    a purged trace whose key is reused, or a changed text."""
    changed = f" AND {_TEXT} IS NOT (SELECT text FROM trace_text WHERE rowid = traces.tkey)"
    for keys, condition in ((new, ""), (known, changed)):
        for start in range(0, len(keys), _CHUNK):
            chunk = keys[start:start + _CHUNK]
            cursor.execute(f"INSERT OR REPLACE INTO trace_text (rowid, text) SELECT tkey, {_TEXT} FROM traces"
                           f" WHERE tkey IN ({','.join('?' * len(chunk))}){condition}", chunk)


def unindex_traces(cursor: sqlite3.Cursor, tkeys: Sequence[int]) -> None:
    for start in range(0, len(tkeys), _CHUNK):
        chunk = tkeys[start:start + _CHUNK]
        cursor.execute(f"DELETE FROM trace_text WHERE rowid IN ({','.join('?' * len(chunk))})", chunk)


def candidates(connection: sqlite3.Connection, text: str, limit: int) -> list[int] | None:
    """Keys of the traces whose text may hold ``text`` (every one that does), at most ``limit`` + 1 of them;
    None where the index cannot answer quickly: a text under three characters has no trigram, and a wildcard in it
    could leave a short run between wildcards that matches everything."""
    if len(text) < 3 or "%" in text or "_" in text:
        return None
    return [key for (key,) in connection.execute("SELECT rowid FROM trace_text WHERE text LIKE ? LIMIT ?",
                                                 (f"%{text}%", limit + 1))]
