"""Cross-site writes and DNS rebinding against a real collector on loopback: Host, Origin and Content-Type checks,
with the real SDK exporter and the dashboard still working (the browser side is in test_dashboard.py)."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentwatch.server import ServerHandle, Settings, start_background
from tests.server.aw_helpers import SpanFactory


def request(server: ServerHandle, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
        connection.request(method, path, body=data, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw.startswith((b"{", b"[")) else raw
    finally:
        connection.close()


def raw_exchange(server: ServerHandle, sent: bytes) -> bytes:
    """Everything the collector answers to ``sent`` (a request asking it to close the connection after)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(sent)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    return received


def stored(server: ServerHandle) -> int:
    return int(request(server, "GET", "/api/traces")[1]["total"])


def test_a_rebound_host_name_gets_no_data(server: ServerHandle, make_span: SpanFactory) -> None:
    assert request(server, "POST", "/api/ingest", make_span(input="secret prompt"),
                   {"Content-Type": "application/json"})[0] == 202
    for host in ("rebind.attacker.example", "rebind.attacker.example:3001", "127.0.0.1.nip.io"):
        status, answer = request(server, "GET", "/api/traces", headers={"Host": host})
        assert status == 400, (host, answer)
        assert "ALLOWED_HOSTS" in answer["detail"] and "secret" not in json.dumps(answer)
        assert request(server, "GET", "/", headers={"Host": host})[0] == 400
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "LOCALHOST", f"[::1]:{server.port}"):
        assert request(server, "GET", "/api/traces", headers={"Host": host})[0] == 200, host


def test_allowed_hosts_and_wildcard_binding(tmp_path: Path, signing_key: Path) -> None:
    base = Settings(db_path=tmp_path / "h.db", signing_key_path=signing_key, alert_interval_seconds=3600)
    named = start_background(settings=Settings.from_env({"ALLOWED_HOSTS": "collector.internal, Box.lan"},
                                                        db_path=base.db_path, signing_key_path=signing_key))
    try:
        assert request(named, "GET", "/health", headers={"Host": "collector.internal:3001"})[0] == 200
        assert request(named, "GET", "/health", headers={"Host": "box.lan"})[0] == 200
        assert request(named, "GET", "/health", headers={"Host": "other.lan"})[0] == 400
        # Uptime monitors ask with HEAD (it answered 405): the same checks, no body.
        assert request(named, "HEAD", "/health", headers={"Host": "box.lan"}) == (200, b"")
        # http.client reads no body for HEAD whatever is sent: the bytes on the wire say whether one came.
        head = raw_exchange(named, b"HEAD /health HTTP/1.1\r\nHost: box.lan\r\nConnection: close\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and head.endswith(b"\r\n\r\n"), head
        assert request(named, "HEAD", "/health", headers={"Host": "other.lan"})[0] == 400
    finally:
        named.stop()
    # Bound to every interface, the collector is reached under names it cannot know (and needs API_KEY).
    anywhere = start_background(host="0.0.0.0", settings=base.replace(api_key="k"))
    try:
        assert request(anywhere, "GET", "/health", headers={"Host": "10.1.2.3:3001"})[0] == 200
    finally:
        anywhere.stop()


def test_cross_site_writes_are_refused(server: ServerHandle, make_span: SpanFactory) -> None:
    foreign = {"Origin": f"http://127.0.0.1:{server.port + 1}"}
    # A no-cors form or fetch can send only these content types without a preflight.
    for content_type in ("text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
                         "multipart/form-data; boundary=x"):
        status, answer = request(server, "POST", "/api/ingest", make_span(), {"Content-Type": content_type})
        assert status == 415, (content_type, answer)
    assert request(server, "POST", "/api/ingest", make_span(), {"Content-Type": "application/xml"})[0] == 415
    # With a JSON type but from another origin (a Blob body sends no type at all): refused too.
    for headers in (foreign, {**foreign, "Content-Type": "application/json"}, {"Origin": "null"},
                    {"Origin": "http://rebind.attacker.example"}):
        status, answer = request(server, "POST", "/api/ingest", make_span(), headers)
        assert status == 403, (headers, answer)
        assert "CORS_ORIGINS" in answer["detail"]
    # A browser's request with no Origin (stripped on its way) still says it is from another site: no origin to trust.
    for site in ("cross-site", "same-site"):
        status, answer = request(server, "POST", "/api/ingest", make_span(),
                                 {"Sec-Fetch-Site": site, "Content-Type": "application/json"})
        assert status == 403 and "Sec-Fetch-Site" in answer["detail"], (site, answer)
        # Found 2026-12-06 (review 3): a same-site request was called "cross-site".
        assert answer["detail"].startswith(f"{site} request"), answer
    status, _ = request(server, "POST", "/api/alerts", {"name": "x", "metric": "cost", "threshold": 1,
                                                        "channel": "webhook", "target": "http://127.0.0.1:9/"},
                        {**foreign, "Content-Type": "application/json"})
    assert status == 403
    assert request(server, "DELETE", "/api/alerts/1", headers=foreign)[0] == 403
    assert stored(server) == 0
    # Same origin (the dashboard), no Origin (the SDK, curl), and JSON variants are fine.
    same = {"Origin": f"http://127.0.0.1:{server.port}", "Content-Type": "application/json"}
    assert request(server, "POST", "/api/ingest", make_span(), same)[0] == 202
    assert request(server, "POST", "/api/ingest", make_span(), {"Content-Type": "application/json; charset=utf-8"}
                   )[0] == 202
    assert request(server, "POST", "/api/ingest", make_span())[0] == 202
    assert request(server, "POST", "/api/ingest", make_span(), {"Sec-Fetch-Site": "same-origin"})[0] == 202
    assert request(server, "POST", "/api/ingest", make_span(), {"Sec-Fetch-Site": "none"})[0] == 202
    assert stored(server) == 5



def test_a_header_the_checks_decide_on_is_taken_once(server: ServerHandle) -> None:
    """Found 2026-12-06 (server probe 13): with two Origin headers the check read the last and the routes the first,
    so "Origin: <another site>" then "Origin: <this collector>" killed every agent; a second Host (RFC 9112: 400)
    named the collector last and read the traces."""
    own = f"127.0.0.1:{server.port}".encode()

    def sent(method: bytes, path: bytes, *headers: bytes) -> bytes:
        body = b"{}" if method == b"POST" else b""
        lines = b"".join(header + b"\r\n" for header in headers)
        return (method + b" " + path + b" HTTP/1.1\r\n" + lines + b"Content-Length: " + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n" + body)

    json_type = b"Content-Type: application/json"
    for request_bytes, header in (
            (sent(b"GET", b"/api/traces", b"Host: rebind.attacker.example", b"Host: " + own), "host"),
            (sent(b"POST", b"/api/circuit-breaker/kill", b"Host: " + own, json_type,
                  b"Origin: http://rebind.attacker.example", b"Origin: http://" + own), "origin"),
            (sent(b"POST", b"/api/circuit-breaker/kill", b"Host: " + own, json_type,
                  b"Sec-Fetch-Site: cross-site", b"Sec-Fetch-Site: same-origin"), "sec-fetch-site"),
            (sent(b"POST", b"/api/circuit-breaker/kill", b"Host: " + own, b"Content-Type: text/plain", json_type),
             "content-type")):
        answer = raw_exchange(server, request_bytes)
        status_line, _, rest = answer.partition(b"\r\n")
        assert b" 400 " in status_line, (header, answer)
        assert f"more than one {header} header" in json.loads(rest.partition(b"\r\n\r\n")[2])["detail"]
    assert request(server, "GET", "/api/circuit-breaker/status")[1]["overrides"] == []
    # Other headers may repeat, as HTTP lets them (a list of values).
    answer = raw_exchange(server, sent(b"GET", b"/api/traces", b"Host: " + own, b"Accept: text/html",
                                       b"Accept: application/json"))
    assert answer.startswith(b"HTTP/1.1 200 "), answer
@pytest.fixture
def cors_server(tmp_path: Path, signing_key: Path) -> Iterator[ServerHandle]:
    settings = Settings(db_path=tmp_path / "c.db", signing_key_path=signing_key, alert_interval_seconds=3600,
                        cors_origins=("http://localhost:3000",))
    handle = start_background(settings=settings)
    try:
        yield handle
    finally:
        handle.stop()


def test_a_cors_origin_may_write(cors_server: ServerHandle, make_span: SpanFactory) -> None:
    status, _ = request(cors_server, "POST", "/api/ingest", make_span(),
                        {"Origin": "http://localhost:3000", "Content-Type": "application/json"})
    assert status == 202
    assert request(cors_server, "POST", "/api/ingest", make_span(), {"Origin": "http://localhost:3001"})[0] == 403


def test_cors_origins_star_lets_a_browser_write_without_an_origin(tmp_path: Path, signing_key: Path,
                                                                  make_span: SpanFactory) -> None:
    """Found 2026-12-06 (review 3): CORS_ORIGINS=* allows any origin, but a browser request whose Origin was stripped
    (Sec-Fetch-Site: cross-site or same-site) was still refused."""
    settings = Settings(db_path=tmp_path / "star.db", signing_key_path=signing_key, alert_interval_seconds=3600,
                        cors_origins=("*",), api_key="k")
    handle = start_background(settings=settings)
    try:
        for site in ("cross-site", "same-site"):
            status, answer = request(handle, "POST", "/api/ingest", make_span(),
                                     {"Sec-Fetch-Site": site, "Content-Type": "application/json", "X-API-Key": "k"})
            assert status == 202, (site, answer)
    finally:
        handle.stop()


def test_the_sdk_exporter_still_delivers(server: ServerHandle, tmp_path: Path) -> None:
    from tests.reliability.conftest import run_script

    result = run_script(f"""
        import agentwatch
        agentwatch.init(proxy_url="{server.url}/api/ingest", flush_interval=0.05)
        with agentwatch.trace("sdk run"):
            pass
        agentwatch.shutdown()
    """, tmp_path)
    assert result.returncode == 0, result.stderr
    traces = request(server, "GET", "/api/traces")[1]
    assert "sdk run" in json.dumps(traces), traces


def test_an_api_path_with_a_trailing_slash_is_the_same_route(tmp_path: Path, signing_key: Path) -> None:
    """Found 2026-12-06 (server probe 13): ``proxy_url=".../api/ingest/"`` got a 307 redirect for every batch,
    which the exporter does not follow with its POST: the program's spans were dropped (``verify()`` False). The
    checks before the router judged such a path as another route too (an ingest token was refused there)."""
    from tests.reliability.conftest import run_script

    secret = "s" * 40
    settings = Settings(db_path=tmp_path / "slash.db", signing_key_path=signing_key, alert_interval_seconds=3600,
                        jwt_secret=secret)
    handle = start_background(settings=settings, port=0)
    try:
        from agentwatch.server._auth import create_token

        token = create_token(secret, "ingest", "bot")
        result = run_script(f"""
            import agentwatch
            agentwatch.init(proxy_url="{handle.url}/api/ingest/", api_key="{token}", flush_interval=0.05)
            with agentwatch.trace("slash run"):
                pass
            assert agentwatch.flush(), "not delivered"
            agentwatch.shutdown()
        """, tmp_path)
        assert result.returncode == 0, result.stderr
        viewer = {"Authorization": f"Bearer {create_token(secret, 'viewer', 'alice')}"}
        status, answer = request(handle, "GET", "/api/traces/", headers=viewer)
        assert status == 200 and "slash run" in json.dumps(answer), answer
        assert request(handle, "GET", "/api/metrics/", headers=viewer)[0] == 200
    finally:
        handle.stop()


def test_a_target_in_absolute_form_is_checked_by_its_host(server: ServerHandle) -> None:
    """Found 2026-12-06 (server probe 13): "GET http://rebind.attacker.example/api/traces" with "Host: localhost"
    was served: uvicorn keeps only the target's path, and the Host check read the Host header, which RFC 9112
    (3.2.2) says to ignore for such a target. The target's host is the one checked."""
    own = f"127.0.0.1:{server.port}"
    for target in (b"http://rebind.attacker.example/api/traces", b"https://rebind.attacker.example:443/api/traces?x=1"):
        answer = raw_exchange(server, b"GET " + target + b" HTTP/1.1\r\nHost: " + own.encode()
                              + b"\r\nConnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 400 ") and b"rebind.attacker.example" in answer, answer[:300]
    answer = raw_exchange(server, f"GET http://{own}/api/traces HTTP/1.1\r\nHost: {own}\r\nConnection: close\r\n\r\n"
                          .encode())
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
