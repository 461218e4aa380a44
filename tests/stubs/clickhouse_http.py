"""ClickHouse's HTTP interface on 127.0.0.1, answered by the real ClickHouse engine (chdb) in this process.

No ClickHouse server can be installed here (no network; Debian's ``clickhouse-server`` is 18.16, from 2018, which
the official driver cannot talk to). This process serves the parts of the HTTP protocol that ``clickhouse-connect``
uses, so the collector's server path runs for real: the driver's requests, server-side parameters
(``param_<name>``), LZ4/zstd-compressed bodies both ways, inserts in the Native format. What the engine does with
a statement is ClickHouse's own (chdb is ClickHouse built as a library); only the transport is this file.

Run as ``python -m tests.stubs.clickhouse_http DATA_DIR`` (chdb allows one data directory per process, so the
engine gets a process of its own, as a server would); it prints its port on the first line of stdout.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import urllib.parse
from email.parser import BytesParser
from email.policy import default
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import lz4.frame
from chdb import session as chdb_session

_FORMAT = re.compile(r"\bFORMAT\s+(\w+)\s*;?\s*\Z", re.IGNORECASE)
_INSERT = re.compile(r"\A\s*INSERT\s+INTO\s+(\S+)\s*(\([^)]*\))?\s*FORMAT\s+Native\s*\Z", re.IGNORECASE | re.DOTALL)
#: URL parameters the driver sends that are transport options, not engine settings.
_TRANSPORT = {"query", "database", "query_id", "session_id", "compress", "decompress", "enable_http_compression",
              "wait_end_of_query", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
              "default_format", "user", "password", "session_timeout", "session_check", "role"}


def _decode_body(body: bytes, encoding: str | None) -> bytes:
    if not encoding or encoding == "identity":
        return body
    if encoding == "lz4":
        return bytes(lz4.frame.decompress(body))
    if encoding == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd
        return bytes(zstd.decompress(body))
    raise ValueError(f"unsupported Content-Encoding {encoding}")


class _Engine:
    def __init__(self, path: str) -> None:
        self.session = chdb_session.Session(path)
        self.lock = threading.Lock()
        # Beside the engine's data (the test's own temporary directory): the process is terminated, never cleans up.
        self.scratch = tempfile.mkdtemp(prefix="ch-http-", dir=os.path.dirname(os.path.abspath(path)))

    def run(self, sql: str, params: dict[str, str]) -> bytes:
        match = _FORMAT.search(sql)
        fmt = match.group(1) if match else "TabSeparated"
        if match:
            sql = sql[:match.start()]
        with self.lock:
            result = self.session.query(sql, fmt, params=params or None)
        return result.bytes() if result is not None else b""

    def insert(self, table: str, columns: str | None, native: bytes) -> None:
        with self.lock:
            path = os.path.join(self.scratch, "insert.native")
            with open(path, "wb") as handle:
                handle.write(native)
            names = columns.strip("()") if columns else "*"
            self.session.query(f"INSERT INTO {table} {columns or ''} SELECT {names} FROM file('{path}', Native)")


class _Handler(BaseHTTPRequestHandler):
    engine: _Engine
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def _answer(self, status: int, body: bytes, fmt: str = "TabSeparated") -> None:
        accepted = self.headers.get("Accept-Encoding", "")
        self.send_response(status)
        if status == 200 and "lz4" in accepted:
            body = lz4.frame.compress(body)
            self.send_header("Content-Encoding", "lz4")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("X-ClickHouse-Format", fmt)
        self.send_header("X-ClickHouse-Timezone", "UTC")
        self.send_header("X-ClickHouse-Server-Display-Name", "chdb-http")
        self.send_header("X-ClickHouse-Query-Id", "q")
        if status != 200:
            self.send_header("X-ClickHouse-Exception-Code", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _handle(self, body: bytes) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        try:
            data = _decode_body(body, self.headers.get("Content-Encoding"))
            content_type = self.headers.get("Content-Type", "")
            if content_type.startswith("multipart/form-data"):
                # Long parameter values travel as form fields instead of the URL; the body is the statement's.
                form = BytesParser(policy=default).parsebytes(
                    f"Content-Type: {content_type}\r\n\r\n".encode() + data)
                data = b""
                for part in form.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    value = part.get_payload(decode=True) or b""
                    if name == "query":
                        data = value
                    elif isinstance(name, str):
                        query[name] = value.decode()
            params = {key[6:]: value for key, value in query.items() if key.startswith("param_")}
            statement = query.get("query")
            if statement is not None:
                insert = _INSERT.match(statement)
                if insert:
                    self.engine.insert(insert.group(1), insert.group(2), data)
                    self._answer(200, b"")
                    return
                sql = statement + ("\n" + data.decode() if data else "")
            else:
                # An insert sends its statement as the body's first line, the Native blocks after it.
                head, newline, rest = data.partition(b"\n")
                insert = _INSERT.match(head.decode("utf-8", "replace")) if newline else None
                if insert:
                    self.engine.insert(insert.group(1), insert.group(2), rest)
                    self._answer(200, b"")
                    return
                sql = data.decode()
            match = _FORMAT.search(sql)
            self._answer(200, self.engine.run(sql, params), match.group(1) if match else "TabSeparated")
        except Exception as error:  # the engine's message, as a server words it
            self._answer(500, f"Code: 1. DB::Exception: {error}".encode())

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():  # inserts stream their blocks
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_POST(self) -> None:  # noqa: N802 - the base class's name
        self._handle(self._body())

    def do_GET(self) -> None:  # noqa: N802 - the base class's name
        if urllib.parse.urlsplit(self.path).path == "/ping":
            self._answer(200, b"Ok.\n")
            return
        self._handle(b"")


def main(path: str) -> None:
    handler = type("Handler", (_Handler,), {"engine": _Engine(path)})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1])
