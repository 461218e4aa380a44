"""Ways to reach ClickHouse: embedded (chdb, in this process) or a server over HTTP (stdlib only).

Both run the same SQL text; values are inlined with ``literal`` (ClickHouse quoting), so the store never
depends on a driver's parameter syntax. Results come back as ``JSONCompact`` and 64-bit integers are
converted from strings when a server quotes them.
"""

from __future__ import annotations

import base64
import json
import math
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["Connection", "ChdbConnection", "HttpConnection", "ClickHouseError", "connect", "literal",
           "parse_url"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT_TYPES = re.compile(r"(Nullable\()?(U?Int(64|128|256))\)?\Z")


class ClickHouseError(RuntimeError):
    """A query failed (the message is ClickHouse's)."""


def literal(value: Any) -> str:
    """``value`` as a ClickHouse SQL literal. Strings escape backslash and quote, which is all the lexer
    interprets inside single quotes."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value!r}")
        return repr(value)
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    raise TypeError(f"cannot inline {type(value).__name__}")


def _convert(payload: bytes) -> list[list[Any]]:
    if not payload.strip():
        return []
    answer = json.loads(payload)
    ints = [index for index, column in enumerate(answer["meta"]) if _INT_TYPES.match(column["type"])]
    rows: list[list[Any]] = answer["data"]
    if ints:
        for row in rows:
            for index in ints:
                if isinstance(row[index], str):
                    row[index] = int(row[index])
    return rows


class Connection:
    """What the store needs: run a statement, fetch rows, insert JSON rows. Thread-safe."""

    database: str

    def execute(self, sql: str) -> None:
        raise NotImplementedError

    def rows(self, sql: str) -> list[list[Any]]:
        raise NotImplementedError

    def insert(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


# chdb runs one embedded server per process, bound to one data directory: sessions are shared by path.
_sessions: dict[str, list[Any]] = {}
_sessions_lock = threading.Lock()


class ChdbConnection(Connection):
    """Embedded ClickHouse (the ``chdb`` package). Queries are serialised: the engine is shared."""

    def __init__(self, path: str | Path, database: str) -> None:
        try:
            from chdb import session as chdb_session
        except ImportError as exc:
            raise ImportError("chdb:// stores need the chdb package: pip install 'agentwatch[clickhouse]'") from exc
        self.path = str(Path(path).resolve())
        self.database = database
        Path(self.path).mkdir(parents=True, exist_ok=True)
        with _sessions_lock:
            entry = _sessions.get(self.path)
            if entry is None:
                if _sessions:
                    raise ClickHouseError(f"chdb already runs on {next(iter(_sessions))}; one data directory "
                                          "per process (use separate databases in it instead)")
                entry = _sessions[self.path] = [chdb_session.Session(self.path), 0, threading.Lock()]
            entry[1] += 1
        self._entry = entry
        self._closed = False

    def _query(self, sql: str, fmt: str = "CSV") -> bytes:
        session, _, lock = self._entry
        with lock:
            try:
                result = session.query(sql, fmt)
            except Exception as exc:  # chdb raises its own error types; the store knows one
                raise ClickHouseError(str(exc)) from exc
        return result.bytes() if result is not None else b""

    def execute(self, sql: str) -> None:
        self._query(sql)

    def rows(self, sql: str) -> list[list[Any]]:
        return _convert(self._query(sql, "JSONCompact"))

    def insert(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        body = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
        if body:
            self._query(f"INSERT INTO {self.database}.{table} FORMAT JSONEachRow\n{body}")

    def close(self) -> None:
        with _sessions_lock:
            if self._closed:
                return
            self._closed = True
            self._entry[1] -= 1
            if self._entry[1] == 0:
                _sessions.pop(self.path, None)
                self._entry[0].close()


class HttpConnection(Connection):
    """A ClickHouse server over its HTTP interface (port 8123; ``clickhouses://`` for TLS, port 8443)."""

    def __init__(self, base_url: str, database: str, user: str | None = None, password: str | None = None,
                 timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.database = database
        self.timeout = timeout
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if user is not None:
            token = base64.b64encode(f"{user}:{password or ''}".encode()).decode()
            self._headers["Authorization"] = f"Basic {token}"

    def _post(self, body: bytes, query: str | None = None) -> bytes:
        params = {"output_format_json_quote_64bit_integers": "0"}
        if query is not None:
            params["query"] = query
        url = self.base_url + "?" + urllib.parse.urlencode(params)
        request = urllib.request.Request(url, data=body, headers=self._headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - URL from config
                return bytes(response.read())
        except urllib.error.HTTPError as exc:
            raise ClickHouseError(exc.read().decode("utf-8", "replace")) from exc

    def execute(self, sql: str) -> None:
        self._post(sql.encode())

    def rows(self, sql: str) -> list[list[Any]]:
        return _convert(self._post((sql + "\nFORMAT JSONCompact").encode()))

    def insert(self, table: str, rows: Iterable[dict[str, Any]]) -> None:
        body = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
        if body:
            self._post(body.encode(), f"INSERT INTO {self.database}.{table} FORMAT JSONEachRow")


def parse_url(url: str) -> tuple[str, dict[str, Any]]:
    """``chdb:///dir[?database=name]`` or ``clickhouse[s]://[user:password@]host[:port][/database]``."""
    parsed = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parsed.query))
    if parsed.scheme == "chdb":
        path = urllib.parse.unquote(parsed.netloc + parsed.path)
        if not path:
            raise ValueError("chdb:// store needs a directory: chdb:///path/to/dir")
        database = query.get("database", "agentwatch")
        options: dict[str, Any] = {"path": path, "database": database}
    elif parsed.scheme in ("clickhouse", "clickhouses"):
        tls = parsed.scheme == "clickhouses"
        host = parsed.hostname or "localhost"
        port = parsed.port or (8443 if tls else 8123)
        database = parsed.path.strip("/") or query.get("database", "agentwatch")
        options = {"base_url": f"{'https' if tls else 'http'}://{host}:{port}/", "database": database,
                   "user": urllib.parse.unquote(parsed.username) if parsed.username else None,
                   "password": urllib.parse.unquote(parsed.password) if parsed.password else None}
    else:
        raise ValueError(f"unsupported store URL {url!r}: use chdb:///dir or clickhouse://host:8123/db")
    if not _IDENTIFIER.match(database):
        raise ValueError(f"database name must be an identifier, got {database!r}")
    return parsed.scheme, options


def connect(url: str) -> Connection:
    scheme, options = parse_url(url)
    if scheme == "chdb":
        return ChdbConnection(options["path"], options["database"])
    return HttpConnection(**options)
