"""OTLP/HTTP protobuf exporter configured by the standard ``OTEL_EXPORTER_OTLP_*`` variables."""

from __future__ import annotations

import os
import sys
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agentwatch.instrumentation import Config, HttpSender, Spool, SpoolingExporter, logger, spool_for

from ._mapping import to_otlp_request

_current_otel_span: Callable[[], Any] | None
try:  # opentelemetry-api: the program's own spans, if it has any
    from opentelemetry.trace import get_current_span as _current_otel_span
except ImportError:  # pragma: no cover - opentelemetry-proto installed without the API
    _current_otel_span = None

__all__ = ["OtlpExporter"]

_DEFAULT_ENDPOINT = "http://localhost:4318"


def _parse_pairs(raw: str) -> dict[str, str]:
    """``k1=v1,k2=v2`` with URL-encoded values, as the OTel spec writes headers and resource attributes."""
    pairs: dict[str, str] = {}
    for item in raw.split(","):
        key, sep, value = item.partition("=")
        if sep and key.strip():
            pairs[urllib.parse.unquote(key.strip())] = urllib.parse.unquote(value.strip())
    return pairs


#: What ``OTEL_EXPORTER_OTLP_PROTOCOL`` may say for what this exporter sends (protobuf; a receiver that takes
#: ``http/json`` takes protobuf on the same port as well).
_HTTP_PROTOCOLS = ("http/protobuf", "http/json")


def _warn_of_unsupported_protocol(env: Mapping[str, str], endpoint: str) -> None:
    """``grpc`` (the usual setting for a receiver's port 4317) cannot be honoured: OTLP/HTTP posted to a gRPC port
    fails with nothing but "not reachable (BadStatusLine)", so the program is told at init what happens instead."""
    variable = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
    protocol = env.get(variable, "").strip().lower()
    if not protocol:
        variable = "OTEL_EXPORTER_OTLP_PROTOCOL"
        protocol = env.get(variable, "").strip().lower()
    if protocol and protocol not in _HTTP_PROTOCOLS:
        logger.warning("agentwatch: %s=%s is not supported; the otlp exporter sends OTLP/HTTP (http/protobuf) to %s "
                       "(point OTEL_EXPORTER_OTLP_ENDPOINT at the receiver's OTLP/HTTP port, 4318 by default)",
                       variable, protocol, endpoint)


class OtlpExporter(SpoolingExporter):
    """``compression``: ``"gzip"`` or ``"none"``; unset, batches are gzip'd except for a receiver on this machine
    (a local OpenTelemetry Collector, Phoenix), where compressing costs the export worker CPU and saves nothing.

    A receiver that is down is handled as the collector is (``SpoolingExporter``): batches it does not answer go
    to ``spool`` after one retry, it is then tried once per probe interval, and a flush waits for it at most once."""

    content_type = "application/x-protobuf"

    def __init__(self, endpoint: str = f"{_DEFAULT_ENDPOINT}/v1/traces", *, headers: Mapping[str, str] | None = None,
                 timeout: float = 10.0, compression: str | None = None,
                 resource_attributes: Mapping[str, Any] | None = None, spool: Spool | None = None) -> None:
        sender = HttpSender(endpoint, headers=dict(headers or {}), timeout=timeout, what="OTLP receiver")
        # True / False as asked; None: the sender decides per batch (plain for a receiver on this machine).
        super().__init__(sender, spool=spool, gzip=compression == "gzip" if compression else None)
        self._resource = {"service.name": "agentwatch", "telemetry.sdk.name": "agentwatch",
                          **(resource_attributes or {})}
        #: No service name was given (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``): the program's own, once it
        #: has one, is looked for at each batch (``_program_service_name``).
        self._service_unnamed = "service.name" not in (resource_attributes or {})

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None, *,
                         config: Config | None = None) -> OtlpExporter:
        """From the ``OTEL_EXPORTER_OTLP_*`` variables; with ``config``, spooling as it asks (``spool_dir``)."""
        env = os.environ if environ is None else environ
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if not endpoint:
            endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT", _DEFAULT_ENDPOINT).rstrip("/") + "/v1/traces"
        _warn_of_unsupported_protocol(env, endpoint)
        headers = {**_parse_pairs(env.get("OTEL_EXPORTER_OTLP_HEADERS", "")),
                   **_parse_pairs(env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", ""))}
        timeout_ms = env.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or env.get("OTEL_EXPORTER_OTLP_TIMEOUT") or "10000"
        compression = env.get("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION") or env.get("OTEL_EXPORTER_OTLP_COMPRESSION")
        resource: dict[str, Any] = _parse_pairs(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
        if env.get("OTEL_SERVICE_NAME"):
            resource["service.name"] = env["OTEL_SERVICE_NAME"]
        return cls(endpoint, headers=headers, timeout=float(timeout_ms) / 1000,
                   compression=compression or None, resource_attributes=resource,
                   spool=spool_for(endpoint, config) if config is not None else None)

    def remote_parent(self) -> tuple[str, str] | None:
        """The OpenTelemetry span current in the program (a web framework's request span, the user's own): a trace
        AgentWatch opens inside it is part of it in the receiver, its root span that span's child. Only a span the
        program samples: one it does not is never exported, and AgentWatch's spans under it would be orphans of a
        trace the backend does not have; they make a trace of their own instead."""
        if _current_otel_span is None:
            return None
        context = _current_otel_span().get_span_context()
        if not context.is_valid or not context.trace_flags.sampled:
            return None
        return f"{context.trace_id:032x}", f"{context.span_id:016x}"

    @property
    def endpoint(self) -> str:
        return self._sender.url

    def selected(self, spans: Sequence[dict[str, Any]]) -> Sequence[dict[str, Any]]:
        """All but the process span: the run's record for AgentWatch's collector (process id, executable, OS release,
        every installed package's version), which in a third-party backend is a trace of its own per process and
        details of the machine that are none of its business."""
        if not any(span["kind"] == "process" for span in spans):
            return spans
        return [span for span in spans if span["kind"] != "process"]

    def body(self, spans: Sequence[dict[str, Any]]) -> bytes:
        if self._service_unnamed:
            name = _program_service_name()
            if name is not None:
                self._resource["service.name"] = name
                self._service_unnamed = False
        return to_otlp_request(spans, self._resource)


def _program_service_name() -> str | None:
    """The service name of the program's global OpenTelemetry tracer provider, when it set one in code
    (``TracerProvider(resource=Resource.create({"service.name": ...}))``): AgentWatch's spans are that service's,
    in the backend beside its own, not a service "agentwatch". None until the program installs such a provider
    (it may do so after ``init()``), or if its name is the SDK's default ``unknown_service``."""
    # The provider the program installed, read as it stands: get_tracer_provider() would install one itself when
    # OTEL_PYTHON_TRACER_PROVIDER is set, and the program's own set_tracer_provider() would then be refused.
    trace = sys.modules.get("opentelemetry.trace")
    provider = getattr(trace, "_TRACER_PROVIDER", None) if trace is not None else None
    if provider is None:
        return None
    resource = getattr(provider, "resource", None)
    attributes = getattr(resource, "attributes", None)
    name = attributes.get("service.name") if isinstance(attributes, Mapping) else None
    if not isinstance(name, str) or not name or name.startswith("unknown_service"):
        return None
    return name
