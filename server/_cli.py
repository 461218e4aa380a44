"""``agentwatch`` command line: ``serve`` the collector, run the ``demo``, ``verify`` a signed report."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentwatch._remote_control import is_loopback_host

__all__ = ["main", "build_parser", "Terminated", "interrupt_behind"]


#: How long start-up waits for a database another process holds locked before saying so (SQLite's own wait is 30 s).
STARTUP_LOCK_WAIT_SECONDS = 3.0


def database_problem(path: Path, wait: float = STARTUP_LOCK_WAIT_SECONDS) -> str | None:
    """One line saying why the collector cannot use the SQLite file at ``path`` and what to do, or None."""
    import sqlite3

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=wait, isolation_level=None)
    except (OSError, sqlite3.Error) as error:
        return f"cannot open the database {path}: {error}; check the path and its permissions, or pass --db"
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("ROLLBACK")
    except sqlite3.OperationalError as error:
        if "locked" in str(error) or "busy" in str(error):
            return (f"the database {path} is locked by another process (waited {wait:g} s); stop the program "
                    "holding it, or pass --db with another file")
        return f"cannot use the database {path}: {error}; check the file and its permissions, or pass --db"
    except sqlite3.DatabaseError as error:
        return (f"{path} is not a usable SQLite database ({error}); move it away or restore a backup, or pass --db "
                "with another file")
    finally:
        connection.close()
    return None


def signing_key_problem(path: Path) -> str | None:
    """One line saying why the report signing key at ``path`` cannot be used (made there if missing), or None."""
    from cryptography.exceptions import UnsupportedAlgorithm

    from ._signing import ReportSigner

    try:
        ReportSigner(path)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as error:
        return (f"cannot use the signing key {path}: {error}; give an unencrypted PEM RSA private key, or pass "
                "--signing-key with a path where one can be made")
    return None


SERVE_ENVIRONMENT = """\
environment (all of them: README, "The collector"):
  DATA_RETENTION_DAYS  default 30: data older than this many days is DELETED,
                       at start and then hourly (traces, spans, cost charts,
                       breaker events, alert history, cron runs); 0 keeps
                       everything. Same as --retention-days
  ZERO_DATA_RETENTION  default false; true: spans are stored without prompts
                       or outputs, whatever clients send (metadata only).
                       Same as --zero-data-retention
  CORS_ORIGINS         default none; comma-separated origins
                       (https://app.example.com) whose web pages may call
                       the API, besides the dashboard the collector serves;
                       * (any) only with API_KEY or JWT_SECRET
  API_KEY              require this key (X-API-Key) on /api; binds 0.0.0.0
                       unless --host is given. With neither API_KEY nor
                       JWT_SECRET: local mode, no authentication
  JWT_SECRET           accept role tokens (agentwatch token create)
  ALLOWED_HOSTS        more host names to answer to (comma-separated; * any)
  HOST, PORT, AGENTWATCH_DB, AGENTWATCH_STORE, AGENTWATCH_SIGNING_KEY,
  AGENTWATCH_WORKERS   as --host, --port, --db, --store, --signing-key,
                       --workers
  CLICKHOUSE_URL, CLICKHOUSE_DB
                       the product docs' names: a ClickHouse server's HTTP URL
                       (http://host:8123) and database, as
                       --store clickhouse://host:8123/db (AGENTWATCH_STORE wins)
  SMTP_HOST, SMTP_PORT, SMTP_USER, SMTP_PASSWORD, SMTP_STARTTLS, SMTP_SSL,
  FROM_EMAIL, ALERT_EMAIL
                       email alerts
"""


#: The flag that sets each collector setting: a value refused is named as the user gave it.
FLAGS = {"host": "--host", "port": "--port", "db_path": "--db", "store_url": "--store",
         "signing_key_path": "--signing-key", "data_retention_days": "--retention-days",
         "zero_data_retention": "--zero-data-retention"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="agentwatch", description="AgentWatch collector and tools.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the collector (API and dashboard)",
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Run the collector. Secrets and most settings come from the "
                                            "environment (below);\na flag wins over its variable.",
                                epilog=SERVE_ENVIRONMENT)
    serve.add_argument("--host", help="interface to bind (default 127.0.0.1; 0.0.0.0 when API_KEY is set)")
    serve.add_argument("--port", type=int, help="port (default 3001, or PORT)")
    serve.add_argument("--db", type=Path, help="SQLite file (default ~/.agentwatch/agentwatch.db, or AGENTWATCH_DB)")
    serve.add_argument("--store", help="keep spans in ClickHouse instead of SQLite: chdb:///dir (embedded) or "
                                       "clickhouse://user:password@host:8123/db (or AGENTWATCH_STORE)")
    serve.add_argument("--signing-key", type=Path, help="PEM private key for signing reports "
                                                        "(default: generated beside the database)")
    serve.add_argument("--retention-days", type=int,
                       help="delete data older than this many days, at start and hourly (default 30, or "
                            "DATA_RETENTION_DAYS; 0 keeps it forever)")
    serve.add_argument("--zero-data-retention", action="store_true", default=None,
                       help="never store prompts or outputs, whatever clients send (default off, or "
                            "ZERO_DATA_RETENTION)")
    serve.add_argument("--workers", type=int,
                       help="server processes sharing the database (default 1, or AGENTWATCH_WORKERS; 2 on a "
                            "2-core machine doubles ingest throughput)")
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])

    demo = commands.add_parser("demo", help="run a multi-agent LangGraph demo that trips the breaker and resumes")
    demo.add_argument("--no-serve", action="store_true", help="exit after the demo instead of serving the dashboard")
    demo.add_argument("--host", help="interface to bind (default 127.0.0.1, or HOST)")
    demo.add_argument("--port", type=int, help="collector port (default 3001, or PORT; 0 picks a free one)")
    demo.add_argument("--db", type=Path, default=Path("agentwatch-demo.db"), help="SQLite file for the collector")

    verify = commands.add_parser("verify", help="check the signature of a report PDF")
    verify.add_argument("file", type=Path)
    verify.add_argument("--public-key", type=Path, action="append", default=[],
                        help="PEM key to trust (repeatable); default: the key beside --db, if any")
    verify.add_argument("--db", type=Path, help="database whose signing key to trust")
    verify.add_argument("--json", action="store_true", help="print the result as JSON")
    token = commands.add_parser("token", help="create role tokens (JWT, signed with JWT_SECRET)")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser(
        "create", help="print a bearer token", description="Print a token for the collector: viewer reads, "
        "operator reads and controls running agents, ingest only sends spans. Needs JWT_SECRET (the collector's).")
    create.add_argument("--role", required=True, choices=["viewer", "operator", "ingest"])
    create.add_argument("--name", required=True, help="who holds it: audit records show this name")
    create.add_argument("--expires-days", type=float, help="valid this many days (default: no expiry)")
    return parser


def _token(args: argparse.Namespace) -> int:
    from ._auth import MAX_TOKEN_SECONDS, create_token

    secret = os.environ.get("JWT_SECRET")
    if not secret:
        print("agentwatch token: set JWT_SECRET (the same as the collector's; e.g. openssl rand -hex 32)",
              file=sys.stderr)
        return 2
    if args.expires_days is not None and not 0 < args.expires_days <= MAX_TOKEN_SECONDS // 86400:
        print(f"agentwatch token: --expires-days must be more than 0 and at most {MAX_TOKEN_SECONDS // 86400} "
              f"(leave it out for a token that does not expire), got {args.expires_days:g}", file=sys.stderr)
        return 2
    expires = args.expires_days * 86400 if args.expires_days is not None else None
    try:
        print(create_token(secret, args.role, args.name, expires_in_seconds=expires))
    except ValueError as error:
        print(f"agentwatch token: {error}", file=sys.stderr)
        return 2
    return 0


def _serve(args: argparse.Namespace) -> int:
    import sqlite3

    from ._settings import Settings

    try:
        settings = Settings.from_env(host=args.host, port=args.port, db_path=args.db,
                                     signing_key_path=args.signing_key, data_retention_days=args.retention_days,
                                     zero_data_retention=args.zero_data_retention, store_url=args.store,
                                     override_names=FLAGS)
    except ValueError as error:
        print(f"agentwatch serve: {error}", file=sys.stderr)
        return 2
    workers_from_environment = args.workers is None
    if workers_from_environment:
        # Read here, not when the parser is built: a bad value is serve's error, not every command's.
        raw = os.environ.get("AGENTWATCH_WORKERS", "").strip() or "1"
        try:
            args.workers = int(raw)
        except ValueError:
            print(f"agentwatch serve: AGENTWATCH_WORKERS: expected a number, got {raw!r}", file=sys.stderr)
            return 2
        if args.workers < 1:
            print("agentwatch serve: AGENTWATCH_WORKERS must be at least 1", file=sys.stderr)
            return 2
    if args.workers < 1:
        print("agentwatch serve: --workers must be at least 1", file=sys.stderr)
        return 2
    clickhouse = settings.store_url is not None
    if clickhouse and args.workers > 1:
        # chdb runs one engine per data directory and process, and the ClickHouse store hands out rule and alert
        # ids under a lock of its own process: one collector per ClickHouse database.
        workers_name = "AGENTWATCH_WORKERS" if workers_from_environment else "--workers"
        store_name = ("--store" if args.store is not None else
                      "AGENTWATCH_STORE" if os.environ.get("AGENTWATCH_STORE") else "CLICKHOUSE_URL")
        print(f"agentwatch serve: {workers_name} > 1 is not supported with {store_name} (ClickHouse)", file=sys.stderr)
        return 2
    if settings.local_mode and not is_loopback_host(settings.host):
        print(f"agentwatch serve: WARNING: listening on {settings.host} without API_KEY: anyone who can reach "
              "this port can read and write all traces.", file=sys.stderr)
    from ._listen import bind, listen_problem, serve_workers

    # Checked before the workers start: a busy port or a bad file is one clear line, not a traceback per process.
    problem = listen_problem(settings.host, settings.port)
    if problem is None and not clickhouse:
        problem = database_problem(settings.db_path)
    if problem is None:
        problem = signing_key_problem(settings.resolved_signing_key_path)
    if problem is not None:
        print(f"agentwatch serve: {problem}", file=sys.stderr)
        return 2
    import uvicorn  # imported after the checks above: a mistake is reported at once

    from ._app import create_app
    from ._backends import open_store, store_location
    from ._balance import BOARD_ENV, create_board_file
    from ._read_timeouts import protocol_with_read_timeout

    mode = "local mode, no API key" if settings.local_mode else "API key or token required on /api"
    where = store_location(settings)
    # With --port 0 or workers, bound here, before this line, which then gives the address clients need (it said
    # ":0"), and the one process or every worker serves on this socket. A fixed port with one process is left to
    # uvicorn, which listens on every address the host resolves to (``localhost``: 127.0.0.1 and ::1).
    listening = bind(settings.host, settings.port) if settings.port == 0 or args.workers > 1 else None
    port = listening.getsockname()[1] if listening is not None else settings.port
    print(f"AgentWatch collector on http://{settings.host}:{port} ({mode}); data in {where}", file=sys.stderr)
    if args.workers > 1:
        # Worker processes build their app from the environment, so the flags are handed over that way.
        os.environ.update({"HOST": settings.host, "PORT": str(port), "AGENTWATCH_DB": str(settings.db_path),
                           "AGENTWATCH_SIGNING_KEY": str(settings.resolved_signing_key_path),
                           "DATA_RETENTION_DAYS": str(settings.data_retention_days),
                           "ZERO_DATA_RETENTION": "true" if settings.zero_data_retention else "false"})
        board = create_board_file()
        os.environ[BOARD_ENV] = str(board)
        try:
            config = uvicorn.Config("agentwatch.server._app:app_from_env", factory=True, workers=args.workers,
                                    host=settings.host, port=port, log_level=args.log_level,
                                    access_log=args.log_level == "debug",
                                    http="agentwatch.server._read_timeouts:WorkerProtocol")
            assert listening is not None  # bound above for workers
            serve_workers(config, listening)
        finally:
            if listening is not None:
                listening.close()
            os.environ.pop(BOARD_ENV, None)
            board.unlink(missing_ok=True)
        return 0
    try:
        store = open_store(settings)
    except (ImportError, ValueError, RuntimeError, OSError, sqlite3.Error) as error:
        # SQLite: the file changed between the check and here.
        print(f"agentwatch serve: cannot open {where}: {error}", file=sys.stderr)
        if listening is not None:
            listening.close()
        return 2
    try:
        app = create_app(store=store, settings=settings)
        config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=args.log_level,
                                access_log=args.log_level == "debug", lifespan="on",
                                http=protocol_with_read_timeout(settings.read_timeout_seconds))
        from ._live import stop_live_streams

        class _Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                stop_live_streams(app)  # open dashboards' event streams would hold up uvicorn's drain
                super().handle_exit(sig, frame)

        try:
            _Server(config).run(sockets=[listening] if listening is not None else None)
        except KeyboardInterrupt:
            # uvicorn stops on Ctrl-C (or SIGTERM: ``Terminated``), then raises the signal again for its caller: the
            # shutdown is done, and that is how a collector is stopped (exit 0, as uvicorn's own command on Ctrl-C).
            pass
    finally:
        store.close()  # a store handed to create_app is its owner's to close
    return 0


def _demo(args: argparse.Namespace) -> int:
    try:
        from . import _demo as demo_module

        demo_module.require_frameworks()
    except ImportError as error:
        print(f"agentwatch demo needs the LangGraph plugin (pip install 'agentwatch[langchain,server]'): {error}",
              file=sys.stderr)
        return 2
    from ._listen import listen_problem
    from ._settings import Settings

    # The same checks as serve's, before anything starts: a mistake is one line, not a traceback.
    try:
        # HOST and PORT as for serve, but an API_KEY does not move the demo off 127.0.0.1 (serve then binds 0.0.0.0).
        settings = Settings.from_env(host=args.host or os.environ.get("HOST") or "127.0.0.1", port=args.port,
                                     db_path=args.db, override_names=FLAGS)
    except ValueError as error:
        print(f"agentwatch demo: {error}", file=sys.stderr)
        return 2
    if settings.store_url is not None:
        # The demo's traces are its own, in its --db file: they must not land in a production ClickHouse.
        store_name = "AGENTWATCH_STORE" if os.environ.get("AGENTWATCH_STORE") else "CLICKHOUSE_URL"
        print(f"agentwatch demo: {store_name} is ignored: the demo keeps its traces in {settings.db_path}",
              file=sys.stderr)
        settings = settings.replace(store_url=None)
    if settings.local_mode and not is_loopback_host(settings.host):
        print(f"agentwatch demo: WARNING: listening on {settings.host} without API_KEY: anyone who can reach "
              "this port can read and write all traces.", file=sys.stderr)
    problem = listen_problem(settings.host, settings.port, free_port_hint=True)
    if problem is None:
        problem = database_problem(settings.db_path)
    if problem is not None:
        print(f"agentwatch demo: {problem}", file=sys.stderr)
        return 2
    result = demo_module.main(args, settings)
    return int(result or 0)


def _verify(args: argparse.Namespace) -> int:
    from ._settings import signing_key_path_for
    from ._signing import fingerprint_of, load_public_key, verify_report

    try:
        data = args.file.read_bytes()
    except OSError as error:
        print(f"agentwatch verify: {error}", file=sys.stderr)
        return 2
    trusted: set[str] = set()
    key_files = list(args.public_key)
    if not key_files and args.db is not None and signing_key_path_for(args.db).exists():
        key_files.append(signing_key_path_for(args.db))
    for path in key_files:
        try:
            trusted.add(fingerprint_of(load_public_key(Path(path).read_bytes())))
        except (OSError, ValueError) as error:
            print(f"agentwatch verify: cannot read key {path}: {error}", file=sys.stderr)
            return 2
    result = verify_report(data, trusted)
    if args.json:
        print(json.dumps(result, indent=2))
    elif result["valid"]:
        origin = ("signed by a trusted key" if result["trusted"] else
                  "signer NOT among the trusted keys" if trusted else "no trusted key given to compare with")
        print(f"OK: {args.file} is intact ({result['signed_bytes']} signed bytes, key {result['key_fingerprint']});"
              f" {origin}")
    else:
        print(f"INVALID: {args.file}: {result['reason']}")
    if not result["valid"]:
        return 1
    return 3 if trusted and not result["trusted"] else 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager, ``docker stop``, ``kill``), raised where Ctrl-C would be: the collector shuts
    down as on Ctrl-C and closes its store (the signal's default action would end the process without it)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated


def interrupt_behind(error: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C (or ``Terminated``) that ``error`` carries: Python wraps an exception raised while it builds a class
    (a dataclass field's ``__set_name__``, as ``init()`` imports its configuration) in a RuntimeError, and a signal that
    lands there arrives so."""
    for _ in range(8):
        if isinstance(error, KeyboardInterrupt):
            return error
        cause = error.__cause__
        if cause is None:
            return None
        error = cause
    return None


#: The status a shell reports for a program that SIGPIPE ended (128 + 13), as ``yes | head -1`` leaves ``yes``.
BROKEN_PIPE_STATUS = 141


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _run(argv)
        finally:
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not at exit: a reader gone by then is this function's to report
    except BrokenPipeError:
        # The reader of our output stopped reading (`agentwatch verify r.pdf --json | head -1`): stop quietly, as
        # Unix tools do. stdout goes to devnull, so the interpreter's last flush of what is left cannot fail too.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # a stdout with no file descriptor (a test's capture, say)
            pass
        return BROKEN_PIPE_STATUS


def _run(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"serve": _serve, "demo": _demo, "verify": _verify, "token": _token}
    # uvicorn handles SIGTERM while it serves, then raises it again for its caller: this handler, from then on.
    serving = args.command in ("serve", "demo") and threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if serving else None
    try:
        return handlers[args.command](args)
    except (KeyboardInterrupt, RuntimeError) as error:
        # Ctrl-C or SIGTERM before serve or demo got going (while they import, say): stopped quietly, with the
        # status a shell gives a program stopped by that signal. Once serving, either is their normal stop: exit 0.
        stopped = interrupt_behind(error)
        if stopped is None:
            raise
        return 143 if isinstance(stopped, Terminated) else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
