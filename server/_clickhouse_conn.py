"""Ways to reach ClickHouse: embedded (chdb, in this process) or a server (the official driver,
``clickhouse-connect``: HTTP with compression, inserts in the Native format).

Both run the same SQL text, with values bound as server-side parameters (``{name:Type}`` placeholders and a
``params`` dict): no value is ever written into the SQL text.
"""

from __future__ import annotations

import json
import re
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["Connection", "ChdbConnection", "ServerConnection", "ClickHouseError", "Params", "connect", "parse_url"]

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_INT_TYPES = re.compile(r"(Nullable\()?(U?Int(64|128|256))\)?\Z")
#: JSON writes a whole Float64 without a point (60000): read back as an int, unlike the server path's and SQLite's.
_FLOAT_TYPES = re.compile(r"(Nullable\()?Float(32|64)\)?\Z")
#: Characters ClickHouse's escaped text format (how parameter values are read) needs a backslash before.
_ESCAPES = str.maketrans({"\\": "\\\\", "'": "\\'", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


class ClickHouseError(RuntimeError):
    """A query failed (the message is ClickHouse's)."""


class Params(dict[str, Any]):
    """Values of one statement: ``params(value, "String")`` adds one and returns its ``{pN:String}`` placeholder."""

    def __call__(self, value: Any, clickhouse_type: str) -> str:
        name = f"p{len(self)}"
        self[name] = value
        return f"{{{name}:{clickhouse_type}}}"


def _param_text(value: Any, top: bool = True) -> str:
    """A parameter value as ClickHouse reads it from the escaped text format (what chdb is handed)."""
    if value is None:
        return "\\N" if top else "NULL"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        escaped = value.translate(_ESCAPES)
        return escaped if top else f"'{escaped}'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_param_text(item, False) for item in value) + "]"
    raise TypeError(f"cannot bind {type(value).__name__}")


def _convert(payload: bytes) -> list[Sequence[Any]]:
    if not payload.strip():
        return []
    answer = json.loads(payload)
    ints = [index for index, column in enumerate(answer["meta"]) if _INT_TYPES.match(column["type"])]
    floats = [index for index, column in enumerate(answer["meta"]) if _FLOAT_TYPES.match(column["type"])]
    rows: list[list[Any]] = answer["data"]
    if ints or floats:
        for row in rows:
            for index in ints:
                if isinstance(row[index], str):
                    row[index] = int(row[index])
            for index in floats:
                if type(row[index]) is int:
                    row[index] = float(row[index])
    return list(rows)


class Connection:
    """What the store needs: run a statement, fetch rows, insert rows given as dicts. Thread-safe."""

    database: str

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        raise NotImplementedError

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Sequence[Any]]:
        raise NotImplementedError

    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        """Append ``rows`` (each with the same keys, the column names) to ``table`` of this database."""
        raise NotImplementedError

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]], types: Mapping[str, str]) -> None:
        """Append rows given column by column (name -> values, all of one length) to ``table`` of this database;
        ``types`` maps each name to its Arrow type name (``"string"``, ``"int64"``, ``"uint8"``, ``"float64"``...).
        The bulk path: no per-row objects between the caller's lists and the engine."""
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
            raise ImportError("chdb:// stores need the chdb package: pip install 'agentwatch[chdb]'") from exc
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

    def _query(self, sql: str, fmt: str = "CSV", params: Mapping[str, Any] | None = None) -> bytes:
        session, _, lock = self._entry
        texts = {name: _param_text(value) for name, value in params.items()} if params else None
        with lock:
            try:
                result = session.query(sql, fmt, params=texts)
            except Exception as exc:  # chdb raises its own error types; the store knows one
                raise ClickHouseError(str(exc)) from exc
        return result.bytes() if result is not None else b""

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        self._query(sql, params=params)

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Sequence[Any]]:
        return _convert(self._query(sql, "JSONCompact", params))

    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        # The engine is in this process: JSON rows inline are as fast as any format here.
        body = "\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
        if body:
            self._query(f"INSERT INTO {self.database}.{table} FORMAT JSONEachRow\n{body}")

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]], types: Mapping[str, str]) -> None:
        # An Arrow table handed to the engine in place (chdb's Python() table function reads the local variable
        # by name): 10x less CPU than JSON rows, and NULLs stay NULL (a dict of lists would store '' for None).
        import pyarrow

        batch = pyarrow.table({name: pyarrow.array(values, type=types[name]) for name, values in columns.items()})
        names = ", ".join(columns)
        if batch.num_rows:
            self._query(f"INSERT INTO {self.database}.{table} ({names}) SELECT {names} FROM Python(batch)")

    def close(self) -> None:
        with _sessions_lock:
            if self._closed:
                return
            self._closed = True
            self._entry[1] -= 1
            if self._entry[1] == 0:
                _sessions.pop(self.path, None)
                self._entry[0].close()


class ServerConnection(Connection):
    """A ClickHouse server through the official driver (``clickhouse-connect``, the ``clickhouse`` extra): HTTP(S)
    on port 8123 (8443 for ``clickhouses://``), LZ4-compressed, parameters bound by the server, inserts in the
    Native format."""

    def __init__(self, host: str, port: int, database: str, user: str | None = None, password: str | None = None,
                 secure: bool = False, timeout: float = 30.0) -> None:
        try:
            import clickhouse_connect
            from clickhouse_connect.driver.exceptions import ClickHouseError as DriverError
        except ImportError as exc:
            raise ImportError("clickhouse:// stores need the clickhouse-connect package: "
                              "pip install 'agentwatch[clickhouse]'") from exc
        self._driver_error: type[Exception] = DriverError
        self.database = database
        try:
            # No session id: statements of several threads may run at once (a session serialises them).
            self._client = clickhouse_connect.get_client(
                host=host, port=port, username=user or "default", password=password or "", secure=secure,
                compress="lz4", autogenerate_session_id=False, connect_timeout=min(timeout, 10.0),
                send_receive_timeout=timeout)
        except DriverError as exc:
            raise ClickHouseError(str(exc)) from exc
        self._contexts: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._insert_lock = threading.Lock()

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> None:
        try:
            self._client.command(sql, parameters=dict(params) if params else None)
        except self._driver_error as exc:
            raise ClickHouseError(str(exc)) from exc

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Sequence[Any]]:
        try:
            return list(self._client.query(sql, parameters=dict(params) if params else None).result_rows)
        except self._driver_error as exc:
            raise ClickHouseError(str(exc)) from exc

    def insert(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        columns = tuple(rows[0])
        with self._insert_lock:  # an insert context (the table's column types, read once) serves one insert at a time
            try:
                context = self._contexts.get((table, columns))
                if context is None:
                    context = self._client.create_insert_context(table, list(columns), database=self.database)
                    self._contexts[(table, columns)] = context
                context.data = [[row[column] for column in columns] for row in rows]
                self._client.insert(context=context)
            except self._driver_error as exc:
                raise ClickHouseError(str(exc)) from exc

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]], types: Mapping[str, str]) -> None:
        names = list(columns)
        if not names or not len(columns[names[0]]):
            return
        with self._insert_lock:
            try:
                self._client.insert(table, [columns[name] for name in names], column_names=names,
                                    database=self.database, column_oriented=True)
            except self._driver_error as exc:
                raise ClickHouseError(str(exc)) from exc

    def close(self) -> None:
        self._client.close()


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
        options = {"host": host, "port": port, "secure": tls, "database": database,
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
    return ServerConnection(**options)
