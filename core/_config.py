"""Configuration for ``agentwatch.init()``: arguments first, then ``AGENTWATCH_*`` env vars, then defaults.

An empty (or blank) variable is the same as an unset one, whatever its type: a template that leaves one empty gets
the default. The one exception is ``AGENTWATCH_SPOOL_DIR=``, whose empty value is the documented way to turn the
spool off (as ``spool_dir=""`` is).
"""

from __future__ import annotations

import dataclasses
import math
import operator
import os
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["Config", "DEFAULT_PROXY_URL", "DEFAULT_TIMEOUT", "build_config", "timeout_seconds"]

DEFAULT_PROXY_URL = "http://localhost:3001/api/ingest"
#: ``flush()`` and ``shutdown()``'s wait, in seconds, when none (or None) is given.
DEFAULT_TIMEOUT = 5.0
#: The longest wait they take: an infinite one overflowed the clock's conversion (OverflowError from flush(inf)).
_LONGEST_WAIT = 7 * 24 * 3600.0

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
#: Variables whose empty value means something (the spool turned off); every other empty one is unset.
_EMPTY_MEANS_EMPTY = frozenset({"spool_dir"})


@dataclasses.dataclass(frozen=True, slots=True, init=False, repr=False, eq=False)
class Config:
    """What ``init()`` was given (``build_config``), frozen: a dataclass (``dataclasses.fields``, ``replace``) whose
    ``__init__`` (keywords only), ``__repr__`` and ``__eq__`` are written once below, over its fields. Generated, they
    were compiled from source by every ``init()`` (with the class's signature for a docstring: ~1.5-2.5 ms)."""

    api_key: str | None = None
    proxy_url: str = DEFAULT_PROXY_URL
    zero_data_retention: bool = False
    capture_messages: bool = False
    budget_per_hour: float | None = None
    max_error_rate: float | None = None
    max_calls_per_minute: int | None = None
    block_on_threshold: bool = False
    #: Reserve each call's worst-case cost before it is sent; admit it only if that fits the budget.
    hard_budget: bool = False
    on_alert: Callable[[dict[str, Any]], Any] | None = None
    on_block: Callable[[Any], Any] | None = None
    agent_name: str | None = None
    enabled: bool = True
    debug: bool = False
    flush_interval: float = 1.0
    max_queue_size: int = 10_000
    #: Estimated bytes of queued spans (captured prompts make spans large); over it the oldest are dropped.
    max_queue_bytes: int = 32 * 1024 * 1024
    max_batch_size: int = 512
    export_timeout: float = 10.0
    auto_instrument: bool = True
    exporters: tuple[Any, ...] = ("http",)
    cost_table_override: Mapping[str, Mapping[str, float]] = dataclasses.field(default_factory=dict)
    agents: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    providers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    #: Ask OpenAI-compatible chat streams for usage (``stream_options.include_usage``) when the user did not:
    #: "auto" only OpenAI's own API, "always" every server, "never" none (such streams are estimated), or
    #: a list of base URLs: those and OpenAI's API.
    stream_usage: str | tuple[str, ...] = "auto"
    limits_backend: str | None = None
    #: While ``limits_backend`` is unreachable: "local" enforces limits per process, "block" blocks every call.
    limits_fallback: str = "local"
    disabled_plugins: frozenset[str] = frozenset()
    #: Where batches the collector could not take are kept for a later run; None: the per-user cache
    #: directory (``~/.cache/agentwatch/spool`` on Linux); "": no spool.
    spool_dir: str | None = None
    spool_max_bytes: int = 64 * 1024 * 1024
    #: Follow operator actions (pause, kill, budget, limits) from the collector this process exports to
    #: (one it authenticates to, or one on loopback): see ``_remote_control``.
    remote_control: bool = True

    #: Prompts and outputs are kept only when asked for and zero data retention is off. Worked out once (the
    #: config is frozen), not by a property: plugins ask it on every LLM call.
    capture_text: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __init__(self, **values: Any) -> None:
        for name, field in _FIELDS.items():
            if name in values:
                value = values.pop(name)
            elif field.default_factory is not dataclasses.MISSING:
                value = field.default_factory()
            else:
                value = field.default
            object.__setattr__(self, name, value)
        if values:
            raise TypeError(f"Config() got an unexpected keyword argument {next(iter(values))!r}")
        object.__setattr__(self, "capture_text", self.capture_messages and not self.zero_data_retention)

    def __repr__(self) -> str:
        return f"Config({', '.join(f'{name}={getattr(self, name)!r}' for name in _FIELDS)})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in _FIELDS)


#: The parameters of ``init()`` (``capture_text`` is derived, not given).
_FIELDS = {f.name: f for f in dataclasses.fields(Config) if f.init}
_LIMITS_FALLBACKS = ("local", "block")
_STREAM_USAGE = ("auto", "always", "never")
_AGENT_LIMIT_KEYS = frozenset(
    {"budget_per_hour", "max_error_rate", "max_calls_per_minute", "block_on_threshold", "hard_budget", "on_alert",
     "on_block", "role", "agent_id"}
)


def _env_name(name: str) -> str:
    return "AGENTWATCH_URL" if name == "proxy_url" else f"AGENTWATCH_{name.upper()}"


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"{name}: expected a boolean, got {raw!r}")


def _from_env(name: str, raw: str) -> Any:
    """Turn an env string into the field's type; validation happens afterwards like for arguments."""
    if name in {"zero_data_retention", "capture_messages", "block_on_threshold", "hard_budget", "enabled", "debug",
                "auto_instrument", "remote_control"}:
        return _parse_bool(_env_name(name), raw)
    if name in {"budget_per_hour", "max_error_rate", "flush_interval", "export_timeout"}:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"{_env_name(name)}: expected a number, got {raw!r}") from None
    if name in {"max_calls_per_minute", "max_queue_size", "max_batch_size", "max_queue_bytes", "spool_max_bytes"}:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{_env_name(name)}: expected an integer, got {raw!r}") from None
    if name in {"agents", "cost_table_override", "providers"}:
        import json  # only for a setting given so (the usual environment has none: ~3 ms of init() otherwise)

        try:
            return json.loads(raw)  # validated afterwards like an argument: a list or a number is named there
        except ValueError:
            raise ValueError(f"{_env_name(name)}: expected a JSON object, got {raw!r}") from None
    if name == "exporters" and raw.strip().lower() == "none":  # the environment's way to say no exporter at all
        return []
    if name in {"exporters", "disabled_plugins"}:
        return [part.strip() for part in raw.split(",") if part.strip()]
    if name == "stream_usage" and "://" in raw:
        return [part.strip() for part in raw.split(",") if part.strip()]
    if name in {"limits_fallback", "stream_usage"}:
        return raw.strip().lower()  # "Block " in a deployment manifest means "block"
    return raw


def _plain_number(value: Any, integer: bool) -> int | float | None:
    """A plain int from any integral number (numpy's too), or a float from any real one; None for anything else,
    a bool included."""
    if isinstance(value, bool):
        return None
    if integer:
        try:
            return operator.index(value)
        except TypeError:
            return None
    if value.__class__ is not float and value.__class__ is not int:
        import numbers  # another kind of number (numpy's, a Fraction): asked only then (~0.7 ms of init() otherwise)

        if not isinstance(value, numbers.Real):
            return None
    try:
        return float(value)
    except OverflowError:  # an int beyond any float: out of range, said as for infinity
        return math.inf


def _number(name: str, value: Any, *, optional: bool, integer: bool = False, upper: float | None = None,
            positive: bool = False) -> Any:
    if value is None and optional:
        return None
    number = _plain_number(value, integer)
    if number is None:
        raise TypeError(f"{name} must be {'an int' if integer else 'a number'}, not {type(value).__name__}")
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if number < 0 or (positive and number == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}, got {value!r}")
    if upper is not None and number > upper:
        raise ValueError(f"{name} must be at most {upper}, got {value!r}")
    return number


def timeout_seconds(where: str, value: Any) -> float:
    """``flush()``'s or ``shutdown()``'s timeout: None is the default, a negative one does not wait, an infinite one
    waits a week at most; what is no number is a clear error (it was an internal TypeError from the worker's clock)."""
    if value is None:
        return DEFAULT_TIMEOUT
    number = _plain_number(value, False)
    if number is None:
        raise TypeError(f"{where} timeout must be a number of seconds or None, not {type(value).__name__}")
    if math.isnan(number):
        raise ValueError(f"{where} timeout must be a number of seconds, got {value!r}")
    return min(max(number, 0.0), _LONGEST_WAIT)


def _boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


def _callable(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable, not {type(value).__name__}")
    return value


def _optional_str(name: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


def validate_agent_limits(where: str, limits: Mapping[str, Any]) -> dict[str, Any]:
    """Check one agent's limits (used by ``init(agents=...)`` and ``agentwatch.agent(...)``)."""
    if not isinstance(limits, Mapping):
        raise TypeError(f"{where} must be a dict of limits (budget_per_hour, max_calls_per_minute, ...), "
                        f"not {type(limits).__name__}")
    unknown = set(limits) - _AGENT_LIMIT_KEYS
    if unknown:
        raise TypeError(f"{where}: unknown agent option(s) {sorted(unknown)}")
    checked = dict(limits)
    for key in ("budget_per_hour",):
        if key in checked:
            checked[key] = _number(f"{where}.{key}", checked[key], optional=True)
    if "max_error_rate" in checked:
        checked["max_error_rate"] = _number(f"{where}.max_error_rate", checked["max_error_rate"], optional=True,
                                            upper=1.0)
    if "max_calls_per_minute" in checked:
        checked["max_calls_per_minute"] = _number(f"{where}.max_calls_per_minute",
                                                  checked["max_calls_per_minute"], optional=True, integer=True)
    for key in ("block_on_threshold", "hard_budget"):
        if key in checked:
            checked[key] = _boolean(f"{where}.{key}", checked[key])
    for key in ("on_alert", "on_block"):
        if key in checked:
            checked[key] = _callable(f"{where}.{key}", checked[key])
    for key in ("role", "agent_id"):
        if key in checked:
            checked[key] = _optional_str(f"{where}.{key}", checked[key])
    return checked


def _ingest_url(url: str) -> str:
    """The collector's address as ``agentwatch serve`` prints it (``http://localhost:3001``, no path) means its ingest
    route: posted to as given, every batch was answered 405 and dropped. Any other path is kept (a reverse proxy's
    prefix, another receiver)."""
    parts = urllib.parse.urlsplit(url)
    if parts.path.strip("/") or parts.query or parts.fragment:
        return url
    return parts._replace(path="/api/ingest").geturl()


def _validate(values: dict[str, Any]) -> dict[str, Any]:
    out = dict(values)
    if isinstance(out.get("spool_dir"), os.PathLike):
        out["spool_dir"] = os.fspath(out["spool_dir"])  # a pathlib.Path; a bytes path is refused below
    for name in ("api_key", "agent_name", "limits_backend", "spool_dir"):
        if name in out:
            out[name] = _optional_str(name, out[name])
    if "proxy_url" in out:
        url = out["proxy_url"]
        if url is None:
            out["proxy_url"] = DEFAULT_PROXY_URL
        elif not isinstance(url, str):
            raise TypeError(f"proxy_url must be a str, not {type(url).__name__}")
        elif not url.startswith(("http://", "https://")):
            raise ValueError(f"proxy_url must be an http(s) URL, got {url!r}")
        else:
            out["proxy_url"] = _ingest_url(url)
    for name in ("zero_data_retention", "capture_messages", "block_on_threshold", "hard_budget", "enabled", "debug",
                 "auto_instrument", "remote_control"):
        if name in out:
            out[name] = _boolean(name, out[name])
    if "budget_per_hour" in out:
        out["budget_per_hour"] = _number("budget_per_hour", out["budget_per_hour"], optional=True)
    if "max_error_rate" in out:
        out["max_error_rate"] = _number("max_error_rate", out["max_error_rate"], optional=True, upper=1.0)
    if "max_calls_per_minute" in out:
        out["max_calls_per_minute"] = _number("max_calls_per_minute", out["max_calls_per_minute"],
                                              optional=True, integer=True)
    for name in ("flush_interval", "export_timeout"):
        if name in out:
            out[name] = _number(name, out[name], optional=False, positive=True)
    for name in ("max_queue_size", "max_batch_size", "max_queue_bytes", "spool_max_bytes"):
        if name in out:
            out[name] = _number(name, out[name], optional=False, integer=True, positive=True)
    for name in ("on_alert", "on_block"):
        if name in out:
            out[name] = _callable(name, out[name])
    if "exporters" in out:
        exporters = out["exporters"]
        if isinstance(exporters, str) or not isinstance(exporters, (list, tuple)):
            raise TypeError("exporters must be a list of exporter objects or names")
        out["exporters"] = tuple(exporters)
    if "cost_table_override" in out:
        table = out["cost_table_override"]
        out["cost_table_override"] = _validate_cost_table({} if table is None else table)
    if "agents" in out:
        out["agents"] = _validate_agents({} if out["agents"] is None else out["agents"])
    if "providers" in out:
        out["providers"] = _validate_providers({} if out["providers"] is None else out["providers"])
    if "limits_fallback" in out:
        fallback = out["limits_fallback"]
        if not isinstance(fallback, str):
            raise TypeError(f"limits_fallback must be a str, not {type(fallback).__name__}")
        if fallback not in _LIMITS_FALLBACKS:
            raise ValueError(f"limits_fallback must be 'local' (enforce limits per process while the limits "
                             f"backend is unreachable) or 'block' (block every LLM call meanwhile), got {fallback!r}")
    if "stream_usage" in out:
        mode = out["stream_usage"]
        if isinstance(mode, bool):
            mode = "always" if mode else "never"
        if isinstance(mode, (list, tuple)):
            if not all(isinstance(url, str) and url.startswith(("http://", "https://")) for url in mode):
                raise ValueError(f"stream_usage: a list must hold http(s) base URLs, got {mode!r}")
            mode = tuple(mode)
        elif not isinstance(mode, str):
            raise TypeError(f"stream_usage must be a str or a list of base URLs, not {type(mode).__name__}")
        elif mode not in _STREAM_USAGE:
            raise ValueError(f"stream_usage must be 'auto' (ask OpenAI's own API for usage in streams), 'always' "
                             f"(ask every OpenAI-compatible server), 'never', or a list of base URLs to ask, "
                             f"got {mode!r}")
        out["stream_usage"] = mode
    if "disabled_plugins" in out:
        out["disabled_plugins"] = _validate_plugin_names(out["disabled_plugins"])
    return out


def _validate_agents(agents: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(agents, Mapping):
        raise TypeError(f"agents must be a dict of agent name -> limits, not {type(agents).__name__}")
    checked = {}
    for name, limits in agents.items():
        if not isinstance(name, str):
            raise TypeError(f"agents: an agent's name must be a str, got {name!r}")
        checked[name] = validate_agent_limits(f"agents[{name!r}]", limits)
    return checked


def _validate_providers(providers: Any) -> dict[str, str]:
    if not isinstance(providers, Mapping):
        raise TypeError(f"providers must be a dict of base URL -> provider name, not {type(providers).__name__}")
    for url, provider in providers.items():
        if not isinstance(url, str) or not isinstance(provider, str):
            raise TypeError(f"providers must be a dict of base URL -> provider name, got {url!r}: {provider!r}")
        if not url.strip().lower().startswith(("http://", "https://")):
            # Matched against the URLs requests go to: without a scheme it would never match one.
            raise ValueError(f"providers: {url!r} is not an http(s) base URL (such as 'http://my-vllm:8000')")
    return dict(providers)


def _validate_plugin_names(plugins: Any) -> frozenset[str]:
    if plugins is None:
        return frozenset()
    if isinstance(plugins, str):
        plugins = [p.strip() for p in plugins.split(",") if p.strip()]
    if not isinstance(plugins, (list, tuple, set, frozenset)):
        raise TypeError(f"disabled_plugins must be a list of plugin names, not {type(plugins).__name__}")
    for plugin in plugins:
        if not isinstance(plugin, str):
            raise TypeError(f"disabled_plugins must hold plugin names (str), got {plugin!r}")
    return frozenset(plugins)


def _validate_cost_table(table: Any) -> dict[str, dict[str, float]]:
    if not isinstance(table, Mapping):
        raise TypeError("cost_table_override must be a dict of model -> {'input': ..., 'output': ...}")
    checked: dict[str, dict[str, float]] = {}
    for model, rates in table.items():
        if not isinstance(model, str) or not isinstance(rates, Mapping):
            raise TypeError(f"cost_table_override[{model!r}] must map a model name to a dict of rates")
        unknown = set(rates) - {"input", "output", "cached_input", "cache_write", "cache_write_1h",
                                "web_search_requests"}
        if unknown:
            raise ValueError(f"cost_table_override[{model!r}]: unknown rate(s) {sorted(unknown)}")
        if "input" not in rates or "output" not in rates:
            raise ValueError(f"cost_table_override[{model!r}] needs 'input' and 'output' USD per 1M tokens")
        checked[model] = {
            key: float(_number(f"cost_table_override[{model!r}][{key!r}]", value, optional=False))
            for key, value in rates.items()
        }
    return checked


def build_config(kwargs: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Merge arguments over ``AGENTWATCH_*`` env vars; raise TypeError/ValueError naming the parameter."""
    unknown = set(kwargs) - set(_FIELDS)
    if unknown:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in _FIELDS:
        raw = environ.get(_env_name(name))
        if raw is None or name in {"on_alert", "on_block"}:  # callables have no text form
            continue
        if not raw.strip() and name not in _EMPTY_MEANS_EMPTY:
            if name == "enabled":  # it once meant off: a kill switch left empty must not pass unseen
                from ._safe import logger

                logger.warning("agentwatch: AGENTWATCH_ENABLED is set but empty, which means unset: AgentWatch is on "
                               "(set it to 0 to switch AgentWatch off)")
            continue  # empty is unset (see the module's docstring)
        if name in kwargs:
            continue
        try:
            values.update(_validate({name: _from_env(name, raw)}))
        except (TypeError, ValueError) as error:  # each field is checked alone: name where this one came from
            message = str(error)
            raise type(error)(message if message.startswith("AGENTWATCH_") else
                              f"{_env_name(name)}: {message}") from None
    values.update(_validate(dict(kwargs)))
    return Config(**values)
