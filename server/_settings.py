"""Collector settings: command-line flags first, then environment variables, then defaults."""

from __future__ import annotations

import dataclasses
import os
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["Settings", "default_db_path", "signing_key_path_for"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


#: The variable each setting is read from (``Settings.from_env``), named when its value is refused.
ENV_NAMES = {
    "host": "HOST", "port": "PORT", "db_path": "AGENTWATCH_DB", "store_url": "AGENTWATCH_STORE",
    "signing_key_path": "AGENTWATCH_SIGNING_KEY", "data_retention_days": "DATA_RETENTION_DAYS",
    "zero_data_retention": "ZERO_DATA_RETENTION", "synchronous": "AGENTWATCH_SYNCHRONOUS",
    "max_body_bytes": "AGENTWATCH_MAX_BODY_BYTES", "max_inflated_bytes": "AGENTWATCH_MAX_INFLATED_BYTES",
    "max_spans_per_request": "AGENTWATCH_MAX_SPANS_PER_REQUEST", "max_json_values": "AGENTWATCH_MAX_JSON_VALUES",
    "read_timeout_seconds": "AGENTWATCH_READ_TIMEOUT", "alert_interval_seconds": "AGENTWATCH_ALERT_INTERVAL",
    "smtp_port": "SMTP_PORT",
}


def default_db_path() -> Path:
    return Path(os.environ.get("AGENTWATCH_DB") or Path.home() / ".agentwatch" / "agentwatch.db")


def signing_key_path_for(db_path: Path) -> Path:
    """The generated report-signing key lives beside the database it signs reports for."""
    return db_path.with_name(db_path.stem + ".signing-key.pem")


def clickhouse_store_url(server_url: str, database: str | None) -> str:
    """The store URL for the product docs' ``CLICKHOUSE_URL`` (``http://localhost:8123``, the server's HTTP endpoint)
    and ``CLICKHOUSE_DB``: ``clickhouse://`` (``clickhouses://`` for https), its user and password kept."""
    parsed = urllib.parse.urlsplit(server_url.strip())
    schemes = {"http": "clickhouse", "https": "clickhouses", "clickhouse": "clickhouse", "clickhouses": "clickhouses"}
    if parsed.scheme not in schemes or not parsed.netloc:
        raise ValueError(f"CLICKHOUSE_URL must be the ClickHouse server's HTTP URL (http://host:8123), got "
                         f"{server_url!r}")
    path = (database or "").strip() or parsed.path.strip("/")
    return urllib.parse.urlunsplit((schemes[parsed.scheme], parsed.netloc, f"/{path}" if path else "", "", ""))


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}: expected a boolean, got {raw!r}")


def _number(name: str, raw: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name}: expected a number, got {raw!r}") from None


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """Everything the collector can be told. ``Settings.from_env()`` reads the documented variables."""

    host: str = "127.0.0.1"
    port: int = 3001
    db_path: Path = dataclasses.field(default_factory=default_db_path)
    #: Where spans live instead of the SQLite file: ``chdb:///dir`` or ``clickhouse://host:8123/db``
    #: (``--store``, ``AGENTWATCH_STORE``). The signing key still defaults to a file beside ``db_path``.
    store_url: str | None = None
    api_key: str | None = None
    #: Signs role tokens (``agentwatch token create``); with it set, /api needs the API key or a token.
    jwt_secret: str | None = None
    cors_origins: tuple[str, ...] = ()
    #: Extra names the collector answers to (``ALLOWED_HOSTS``), besides localhost, 127.0.0.1, [::1] and
    #: ``host``; "*" answers to any. A collector bound to every interface (0.0.0.0) answers to any name unless
    #: this is set. Other ``Host`` headers are refused: that is what defeats DNS rebinding.
    allowed_hosts: tuple[str, ...] = ()
    zero_data_retention: bool = False
    #: 0 keeps data forever.
    data_retention_days: int = 30
    #: "NORMAL" survives a process crash (the WAL is written before commit returns); "FULL" also power loss.
    synchronous: str = "NORMAL"
    # Per-request caps keep one request's peak memory near 100 MB whatever it holds (README, "Reliability"):
    # the SDK sends 512 spans per batch; 10,000 real spans are about 10 MB of JSON.
    max_body_bytes: int = 10 * 1024 * 1024
    max_inflated_bytes: int = 24 * 1024 * 1024
    max_spans_per_request: int = 10_000
    #: JSON values (objects, arrays, strings, numbers...) per request: each costs 30-70 bytes once parsed.
    max_json_values: int = 1_000_000
    #: Seconds a request's headers may take to arrive, and a body may pause; a client slower than that is
    #: disconnected (with 408), which frees what its request held.
    read_timeout_seconds: float = 30.0
    signing_key_path: Path | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_ssl: bool = False
    from_email: str = "agentwatch@localhost"
    #: Recipient of email rules that name none (the docs' example rule has no address).
    alert_email_to: str | None = None
    alert_interval_seconds: float = 30.0
    #: Ingest wakes the rule evaluator, but not more often than this.
    alert_min_interval_seconds: float = 2.0
    maintenance_interval_seconds: float = 3600.0
    webhook_timeout_seconds: float = 5.0

    @property
    def local_mode(self) -> bool:
        """No credentials configured: every route is open (meant for a collector on loopback)."""
        return not self.api_key and not self.jwt_secret

    @property
    def resolved_signing_key_path(self) -> Path:
        return self.signing_key_path or signing_key_path_for(self.db_path)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, override_names: Mapping[str, str] | None = None,
                 **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); ``overrides`` that are not None win.

        A value refused names where it came from: its variable, or for an override its name in ``override_names``
        (a command's flag: ``{"port": "--port"}``)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("API_KEY"):
            values["api_key"] = env["API_KEY"]
            # A collector that checks keys is meant to be reached from elsewhere.
            values["host"] = "0.0.0.0"
        if env.get("JWT_SECRET"):
            values["jwt_secret"] = env["JWT_SECRET"]
            values.setdefault("host", "0.0.0.0")
        if env.get("HOST"):
            values["host"] = env["HOST"]
        if env.get("PORT"):
            values["port"] = _number("PORT", env["PORT"], int)
        if env.get("AGENTWATCH_DB"):
            values["db_path"] = Path(env["AGENTWATCH_DB"])
        if env.get("AGENTWATCH_STORE"):
            values["store_url"] = env["AGENTWATCH_STORE"]
        elif env.get("CLICKHOUSE_URL"):  # the product docs' way to name the ClickHouse server
            values["store_url"] = clickhouse_store_url(env["CLICKHOUSE_URL"], env.get("CLICKHOUSE_DB"))
        if env.get("CORS_ORIGINS"):
            values["cors_origins"] = tuple(o.strip() for o in env["CORS_ORIGINS"].split(",") if o.strip())
        if env.get("ALLOWED_HOSTS"):
            values["allowed_hosts"] = tuple(h.strip().lower() for h in env["ALLOWED_HOSTS"].split(",") if h.strip())
        if "ZERO_DATA_RETENTION" in env:
            values["zero_data_retention"] = _bool("ZERO_DATA_RETENTION", env["ZERO_DATA_RETENTION"])
        if env.get("DATA_RETENTION_DAYS"):
            values["data_retention_days"] = _number("DATA_RETENTION_DAYS", env["DATA_RETENTION_DAYS"], int)
        if env.get("AGENTWATCH_SYNCHRONOUS"):
            values["synchronous"] = env["AGENTWATCH_SYNCHRONOUS"].strip().upper()
        for name, key, kind in (
            ("AGENTWATCH_MAX_BODY_BYTES", "max_body_bytes", int),
            ("AGENTWATCH_MAX_INFLATED_BYTES", "max_inflated_bytes", int),
            ("AGENTWATCH_MAX_SPANS_PER_REQUEST", "max_spans_per_request", int),
            ("AGENTWATCH_MAX_JSON_VALUES", "max_json_values", int),
            ("AGENTWATCH_READ_TIMEOUT", "read_timeout_seconds", float),
            ("AGENTWATCH_ALERT_INTERVAL", "alert_interval_seconds", float),
            ("SMTP_PORT", "smtp_port", int),
        ):
            if env.get(name):
                values[key] = _number(name, env[name], kind)
        if env.get("AGENTWATCH_SIGNING_KEY"):
            values["signing_key_path"] = Path(env["AGENTWATCH_SIGNING_KEY"])
        for name, key in (("SMTP_HOST", "smtp_host"), ("SMTP_USER", "smtp_user"),
                          ("SMTP_PASSWORD", "smtp_password"), ("FROM_EMAIL", "from_email"),
                          ("ALERT_EMAIL", "alert_email_to")):
            if env.get(name):
                values[key] = env[name]
        for name, key in (("SMTP_STARTTLS", "smtp_starttls"), ("SMTP_SSL", "smtp_ssl")):
            if name in env:
                values[key] = _bool(name, env[name])
        names = {key: name for key, name in ENV_NAMES.items() if env.get(name)}
        given = {key: value for key, value in overrides.items() if value is not None}
        names.update({key: (override_names or {}).get(key, key) for key in given})
        values.update(given)
        if "db_path" in values:
            values["db_path"] = Path(values["db_path"])
        settings = cls(**values)
        settings.validate(names)
        return settings

    def validate(self, names: Mapping[str, str] | None = None) -> None:
        """ValueError for a value the collector cannot run with, naming the setting as ``names`` calls it (the
        variable or flag it came from), else by its field (as a program that built these settings named it)."""
        def name(key: str) -> str:
            return (names or {}).get(key, key)

        if self.synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"{name('synchronous')} must be NORMAL or FULL, got {self.synchronous!r}")
        if self.data_retention_days < 0:
            raise ValueError(f"{name('data_retention_days')} must be >= 0 (0 keeps data forever)")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"{name('port')} out of range: {self.port} (0 to 65535; 0 picks a free port)")
        for key in ("max_body_bytes", "max_inflated_bytes", "max_spans_per_request", "max_json_values"):
            if getattr(self, key) <= 0:
                raise ValueError(f"{name(key)} must be positive, got {getattr(self, key)}")
        if not self.read_timeout_seconds > 0:
            raise ValueError(f"{name('read_timeout_seconds')} must be > 0 seconds, got {self.read_timeout_seconds!r}")
        if not self.alert_interval_seconds > 0:
            raise ValueError(f"{name('alert_interval_seconds')} must be > 0 seconds, got "
                             f"{self.alert_interval_seconds!r}")
        if "*" in self.cors_origins and self.local_mode:
            # With no credentials, the Origin check is all that keeps other web sites from the API: "*" turned it off
            # for every site, which could then read every trace and kill or pause agents.
            raise ValueError("CORS_ORIGINS=* would let every web site read your traces and control your agents, and "
                             "this collector checks no credentials: list the origins that may call it "
                             "(CORS_ORIGINS=https://app.example.com), or set API_KEY")
        if self.store_url is not None and not self.store_url.startswith(
                ("chdb://", "clickhouse://", "clickhouses://")):
            raise ValueError(f"{name('store_url')} must be chdb:///dir or clickhouse://host:8123/db, got "
                             f"{self.store_url!r}")
