"""Entry points of the distributions on ``sys.path``, found without ``importlib.metadata``, and the plugins' ones kept
in a per-user cache, per ``sys.path`` directory."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["EntryPoint", "ENTRY_POINT_GROUP", "entry_points_of", "plugin_entry_points", "distributions", "normalize"]

ENTRY_POINT_GROUP = "agentwatch.plugins"


class EntryPoint:
    """The part of ``importlib.metadata.EntryPoint`` that discovery uses: ``module:attr`` loaded on demand."""

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str) -> None:
        self.name = name
        self.value = value

    def load(self) -> Any:
        module_name, _, attribute = self.value.partition(":")
        module: Any = importlib.import_module(module_name.strip())
        for part in attribute.strip().split(".") if attribute.strip() else ():
            module = getattr(module, part)
        return module


def _section(text: str, group: str) -> list[tuple[str, str]]:
    """``name = value`` lines of ``[group]`` in an ``entry_points.txt`` (an INI file without interpolation)."""
    found: list[tuple[str, str]] = []
    inside = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line[0] == "[":
            inside = line == f"[{group}]"
            continue
        if inside and "=" in line:
            name, _, value = line.partition("=")
            value = value.split("[", 1)[0].strip()  # extras, as importlib.metadata ignores them for loading
            found.append((name.strip(), value))
    return found


def normalize(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503, with ``.`` and ``_`` as ``-``)."""
    return name.lower().replace("_", "-").replace(".", "-")


def _distributions_in(directory: str) -> list[tuple[str, str]]:
    """(normalized name, metadata directory) of each distribution in one ``sys.path`` directory, in name order."""
    try:
        entries = os.scandir(directory or ".")
    except OSError:  # a zip file or a missing directory: no plain dist-info to read there
        return []
    with entries:
        names = sorted(entry.name for entry in entries if entry.name.endswith((".dist-info", ".egg-info")))
    return [(normalize(name.rpartition(".")[0].partition("-")[0]), os.path.join(directory or ".", name))
            for name in names]


def distributions() -> Iterator[tuple[str, str]]:
    """(normalized name, metadata directory) of every distribution on ``sys.path``; the first of a name wins,
    as with ``importlib.metadata``, which this replaces where only a file or two is wanted: importing it (with
    email, zipfile and csv) costs ~40 ms, and it builds a ``Distribution`` per installed package."""
    seen: set[str] = set()
    for directory in sys.path:
        for distribution, path in _distributions_in(directory):
            if distribution not in seen:
                seen.add(distribution)
                yield distribution, path


def _declared(path: str, group: str, needle: bytes) -> list[tuple[str, str]]:
    """The (name, value) entry points of ``group`` a metadata directory declares; only a file that mentions the
    group is parsed."""
    try:
        with open(os.path.join(path, "entry_points.txt"), "rb") as handle:
            data = handle.read()
    except OSError:
        return []
    return _section(data.decode("utf-8", "replace"), group) if needle in data else []


def entry_points_of(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` in every distribution on ``sys.path``, as
    ``importlib.metadata.entry_points(group=...)`` finds them."""
    needle = group.encode()
    return [EntryPoint(name, value) for _distribution, path in distributions()
            for name, value in _declared(path, group, needle)]


# The scan opens every distribution's metadata directory (~500 with every framework installed: ~3 ms of init()).
# What it finds for ``agentwatch.plugins`` is kept in a per-user file, per ``sys.path`` directory: each directory's
# distributions and their plugins, valid while it has the modification time it had then (installing, upgrading or
# removing a distribution adds or renames a ``*.dist-info`` directory there, which changes it). Per directory, so that
# a program in a directory of its own (a script's, a test's temporary one: first on ``sys.path``) scans that one alone
# and reads the rest. A directory modified in the last seconds is not trusted (a coarse file-system clock could hide a
# change made within the same tick): it is scanned, and not kept.
_CACHE_VERSION = "agentwatch entry points 2"
_SETTLED_NS = 2_000_000_000
#: Directories kept in the cache: those of this ``sys.path`` first, then those other programs had, the latest first.
_KEPT_DIRECTORIES = 64


class _Listing:
    """What one ``sys.path`` directory holds: its modification time (-1: missing), the names of its distributions, and
    the plugins they declare as (distribution, entry point name, value)."""

    __slots__ = ("modified", "names", "plugins")

    def __init__(self, modified: int, names: list[str], plugins: list[tuple[str, str, str]]) -> None:
        self.modified = modified
        self.names = names
        self.plugins = plugins


def _cache_path() -> str:
    from ._spool import user_cache_dir

    return os.path.join(user_cache_dir(), "entry-points.txt")


def _modified(directory: str) -> int:
    try:
        return os.stat(directory).st_mtime_ns
    except OSError:
        return -1


def _listing(directory: str, modified: int) -> _Listing:
    needle = ENTRY_POINT_GROUP.encode()
    found = _distributions_in(directory)
    return _Listing(modified, [distribution for distribution, _path in found],
                    [(distribution, name, value) for distribution, path in found
                     for name, value in _declared(path, ENTRY_POINT_GROUP, needle)])


def _read_cache() -> dict[str, _Listing]:
    """The cache file's listings: a header line, then per directory ``@<mtime> <directory>``, a line with its
    distributions' names (space-separated: none has a space), and a tab-separated ``<distribution>\t<entry point
    name>\t<value>`` line per plugin. A few lines per directory: read at every ``init()``."""
    try:
        with open(_cache_path(), encoding="utf-8") as handle:
            lines = handle.read().split("\n")
    except (OSError, ValueError):
        return {}
    listings: dict[str, _Listing] = {}
    if lines[0] != _CACHE_VERSION:
        return listings
    listing = None
    for index in range(1, len(lines)):
        line = lines[index]
        if line.startswith("@"):
            modified, _, directory = line[1:].partition(" ")
            listing = listings[directory] = _Listing(int(modified), lines[index + 1].split(), [])
        elif "\t" in line and listing is not None:
            distribution, name, value = line.split("\t")
            listing.plugins.append((distribution, name, value))
    return listings


def _write_cache(listings: dict[str, _Listing]) -> None:
    path = _cache_path()
    temporary = f"{path}.{os.getpid()}.tmp"
    rows = [_CACHE_VERSION]
    for directory, listing in listings.items():
        rows += [f"@{listing.modified} {directory}", " ".join(listing.names)]
        rows += ["\t".join(plugin) for plugin in listing.plugins]
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write("\n".join(rows) + "\n")
        os.replace(temporary, path)  # whole, or not at all, for a process reading it meanwhile
    except OSError:  # a read-only home: scan every time
        try:
            os.unlink(temporary)
        except OSError:
            pass


def plugin_entry_points() -> list[EntryPoint]:
    """``entry_points_of(ENTRY_POINT_GROUP)``, each ``sys.path`` directory read from the per-user cache unless it
    changed."""
    import time

    try:
        cached = _read_cache()
    except (ValueError, IndexError):  # a damaged file: scanned afresh, and rewritten
        cached = {}
    now = time.time_ns()
    listings: dict[str, _Listing] = {}
    changed = False
    for entry in sys.path:
        directory = os.path.abspath(entry or ".")  # "" is the working directory: the same name for another one
        if directory in listings or "\n" in directory:
            continue
        modified = _modified(directory)
        listing = cached.get(directory)
        if listing is None or listing.modified != modified:
            listing = _listing(directory, modified)
            if now - modified < _SETTLED_NS:  # changed just now: scanned, not kept (nor a stale listing of it)
                changed |= cached.pop(directory, None) is not None
            else:
                changed = True
        listings[directory] = listing
    found: list[EntryPoint] = []
    seen: set[str] = set()
    for listing in listings.values():
        # The first distribution of a name on sys.path wins, as for importlib.metadata.
        found += [EntryPoint(name, value) for distribution, name, value in listing.plugins if distribution not in seen]
        seen.update(listing.names)
    if changed:
        kept = {directory: listing for directory, listing in listings.items() if now - listing.modified >= _SETTLED_NS}
        for directory, listing in cached.items():
            if len(kept) >= _KEPT_DIRECTORIES:
                break
            kept.setdefault(directory, listing)
        _write_cache(kept)
    return found
