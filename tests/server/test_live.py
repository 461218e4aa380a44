"""``/api/live``: a change event when data is stored (both stores), the API key and Host checks, and a server that
stops with pages still following the stream."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

from agentwatch.server import ServerHandle, Settings, start_background
from tests.server.aw_helpers import SpanFactory, make_trace


class _Stream:
    """An open ``/api/live`` response read event by event."""

    def __init__(self, handle: ServerHandle, headers: dict[str, str] | None = None) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=30)
        self.connection.request("GET", "/api/live?interval=0.2", headers=headers or {})
        self.response = self.connection.getresponse()

    def events(self) -> Iterator[tuple[str, dict]]:
        name, data = "message", ""
        while True:
            line = self.response.fp.readline()
            if not line:
                return
            text = line.decode().rstrip("\n")
            if text.startswith("event:"):
                name = text[6:].strip()
            elif text.startswith("data:"):
                data = text[5:].strip()
            elif text == "" and data:
                yield name, json.loads(data)
                name, data = "message", ""

    def close(self) -> None:
        self.connection.close()


def _ingest(handle: ServerHandle, spans: list[dict], headers: dict[str, str] | None = None) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", handle.port, timeout=10)
    connection.request("POST", "/api/ingest", body=json.dumps(spans),
                       headers={"Content-Type": "application/json", **(headers or {})})
    assert connection.getresponse().status == 202


def test_a_change_event_follows_ingest(collector: ServerHandle, make_span: SpanFactory) -> None:
    stream = _Stream(collector)
    try:
        assert stream.response.status == 200
        assert stream.response.getheader("content-type").startswith("text/event-stream")
        events = stream.events()
        name, hello = next(events)
        assert name == "hello"
        _ingest(collector, make_trace(make_span, calls=1))
        name, change = next(events)
        assert name == "change" and change["token"] != hello["token"]
    finally:
        stream.close()


def test_api_key_and_host_checks_apply(settings: Settings, make_span: SpanFactory) -> None:
    handle = start_background(settings=settings.replace(api_key="k-123"), port=0)
    try:
        refused = _Stream(handle)
        assert refused.response.status == 401
        refused.close()
        rebound = _Stream(handle, {"Host": "rebind.attacker.example", "X-API-Key": "k-123"})
        assert rebound.response.status == 400
        rebound.close()
        stream = _Stream(handle, {"X-API-Key": "k-123"})
        assert stream.response.status == 200 and next(stream.events())[0] == "hello"
        stream.close()
    finally:
        handle.stop()


def test_open_streams_do_not_hold_up_a_stop(settings: Settings) -> None:
    handle = start_background(settings=settings, port=0)
    streams = [_Stream(handle) for _ in range(3)]
    for stream in streams:
        assert next(stream.events())[0] == "hello"
    handle.stop(timeout=10)  # a stream lasts 25 s: only the stop signal can end it within the join's 10 s
    assert not handle.running
    ends = [list(stream.events()) for stream in streams]
    assert all(events and events[-1] == ("end", {"reconnect": False}) for events in ends)
    for stream in streams:
        stream.close()
