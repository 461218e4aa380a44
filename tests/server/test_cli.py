"""The ``agentwatch`` command as a user runs it, in a process of its own: a mistake is one clear line."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentwatch.server import Settings
from agentwatch.server._cli import Terminated, interrupt_behind
from tests.server.test_server_process import LAUNCH, free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[2]


def agentwatch(*args: str, cwd: Path, env: dict[str, str] | None = None,
               timeout: float = 90) -> subprocess.CompletedProcess[str]:
    """Run ``agentwatch ARGS`` in ``cwd`` as a user would, and wait for it."""
    return subprocess.run([sys.executable, "-c", LAUNCH, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def one_clear_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    """The only line on stderr, for exit status 2 and no traceback; it contains every one of ``words``."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that another program (a collector already running, say) listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_demo_on_a_busy_port_says_what_to_do(tmp_path: Path, busy_port: int) -> None:
    # The README's first command, while `agentwatch serve` already has the port.
    result = agentwatch("demo", "--no-serve", "--port", str(busy_port), cwd=tmp_path)
    line = one_clear_line(result, "agentwatch demo:", str(busy_port), "already in use", "--port")
    assert "stop" in line
    assert result.stdout == ""  # the demo did not run
    assert not (tmp_path / "agentwatch-demo.db").exists()


def test_demo_honours_port_as_serve_does(tmp_path: Path, busy_port: int) -> None:
    """Found 2026-12-06: ``PORT=8080 agentwatch demo`` ignored PORT, which ``serve`` and its help honour, and started
    on 3001 (or failed there, naming a port the user never chose)."""
    result = agentwatch("demo", "--no-serve", cwd=tmp_path, env={"PORT": str(busy_port)})
    one_clear_line(result, "agentwatch demo:", str(busy_port), "already in use")
    assert result.stdout == ""


@pytest.mark.parametrize("case", ["port out of range", "not a database", "parent is a file", "bad env value"])
def test_demo_refuses_bad_input_in_one_line(tmp_path: Path, case: str) -> None:
    (tmp_path / "notes.db").write_text("my shopping list, not a database\n" * 100)
    (tmp_path / "afile").write_text("")
    args, env, words = {
        "port out of range": (["--port", "99999"], {}, ["99999"]),
        "not a database": (["--port", "0", "--db", "notes.db"], {}, ["notes.db", "--db"]),
        "parent is a file": (["--port", "0", "--db", "afile/x.db"], {}, ["afile", "--db"]),
        "bad env value": (["--port", "0"], {"DATA_RETENTION_DAYS": "soon"}, ["DATA_RETENTION_DAYS", "soon"]),
    }[case]
    result = agentwatch("demo", "--no-serve", *args, cwd=tmp_path, env=env)
    one_clear_line(result, "agentwatch demo:", *words)
    assert result.stdout == ""
    assert (tmp_path / "notes.db").read_text().startswith("my shopping list")


def test_serve_refuses_cors_star_without_credentials(tmp_path: Path) -> None:
    result = agentwatch("serve", "--port", "0", "--db", "x.db", cwd=tmp_path, env={"CORS_ORIGINS": "*"}, timeout=30)
    one_clear_line(result, "agentwatch serve:", "CORS_ORIGINS=*", "every web site", "API_KEY")
    assert not (tmp_path / "x.db").exists()


def test_demo_reports_a_locked_database_promptly(tmp_path: Path) -> None:
    db = tmp_path / "busy.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        began = time.monotonic()
        result = agentwatch("demo", "--no-serve", "--port", "0", "--db", str(db), cwd=tmp_path)
        took = time.monotonic() - began
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    one_clear_line(result, "agentwatch demo:", "locked", str(db), "waited 3 s")
    assert took < 25  # not SQLite's 30 s per attempt


def test_serve_on_a_busy_port_says_what_to_do(tmp_path: Path, busy_port: int) -> None:
    result = agentwatch("serve", "--port", str(busy_port), "--db", "s.db", cwd=tmp_path)
    line = one_clear_line(result, "agentwatch serve:", str(busy_port), "already in use", "--port")
    assert "stop" in line
    assert not (tmp_path / "s.db").exists()


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="Ctrl-C in a terminal signals the process group")
@pytest.mark.parametrize("command", [["serve"], ["serve", "--workers", "2"], ["demo"]])
def test_ctrl_c_stops_quietly(tmp_path: Path, command: list[str]) -> None:
    port = free_port()
    log = tmp_path / "stderr.txt"
    # A session of its own, as a terminal's foreground job: Ctrl-C sends SIGINT to every process of the group.
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, *command, "--port", str(port), "--db", str(tmp_path / "c.db")],
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL, stderr=stderr,
            start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        wait_until_serving(process, port)
        workers = int(command[-1]) if "--workers" in command else 1
        deadline = time.monotonic() + 120
        while command[0] == "serve" and log.read_text().count("Application startup complete") < workers:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    err = log.read_text()
    assert process.returncode == 0, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


@pytest.mark.parametrize("command", [["serve"], ["demo"]])
def test_sigterm_shuts_down_and_closes_the_database(tmp_path: Path, command: list[str]) -> None:
    """A service manager or ``docker stop`` sends SIGTERM: the collector shuts down as on Ctrl-C and closes its
    store (SQLite folds its write-ahead log back into the file on the last close). Before, uvicorn raised the signal
    again after its shutdown and its default action ended the process there: exit -15, the store never closed."""
    port = free_port()
    db = tmp_path / "t.db"
    with (tmp_path / "stderr.txt").open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-c", LAUNCH, *command, "--port", str(port), "--db", str(db)],
                                   cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_until_serving(process, port)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    err = (tmp_path / "stderr.txt").read_text()
    assert process.returncode == 0, err
    assert "Traceback" not in err, err
    assert not db.with_name("t.db-wal").exists(), "the store was not closed"
    sqlite3.connect(db).execute("SELECT count(*) FROM spans").fetchone()


def test_a_bad_agentwatch_workers_is_serves_error_only(tmp_path: Path) -> None:
    env = {"AGENTWATCH_WORKERS": "abc"}
    for args in (["--help"], ["serve", "--help"], ["verify", "missing.pdf"], ["token", "create", "--help"]):
        result = agentwatch(*args, cwd=tmp_path, env=env)
        assert "Traceback" not in result.stderr and "AGENTWATCH_WORKERS" not in result.stderr, (args, result.stderr)
    assert agentwatch("--help", cwd=tmp_path, env=env).returncode == 0
    result = agentwatch("serve", "--port", "0", "--db", "w.db", cwd=tmp_path, env=env)
    one_clear_line(result, "agentwatch serve:", "AGENTWATCH_WORKERS", "'abc'")
    result = agentwatch("serve", "--port", "0", "--db", "w.db", cwd=tmp_path, env={"AGENTWATCH_WORKERS": "0"})
    one_clear_line(result, "agentwatch serve:", "AGENTWATCH_WORKERS", "at least 1")


@pytest.mark.parametrize("args", [["verify", "report.pdf", "--json"], ["verify", "report.pdf"],
                                  ["token", "create", "--role", "viewer", "--name", "ci"]])
def test_output_to_a_reader_that_stopped_reading_ends_quietly(tmp_path: Path, args: list[str]) -> None:
    """Found 2026-12-06: `agentwatch verify rep.pdf --json | head -5` ended with a BrokenPipeError traceback. Now as
    other Unix tools: nothing on stderr, and the status a shell gives a program SIGPIPE ended."""
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4 not a signed report\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the command writes, as `| head -0`: no race with it
    try:
        result = subprocess.run([sys.executable, "-c", LAUNCH, *args], stdout=write_end, stderr=subprocess.PIPE,
                                text=True, timeout=90, cwd=tmp_path,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "JWT_SECRET": "s" * 32})
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 141


def test_serve_help_and_readme_say_what_the_retention_settings_do(tmp_path: Path) -> None:
    from agentwatch.server import Settings

    defaults = Settings()
    assert (defaults.data_retention_days, defaults.zero_data_retention, defaults.cors_origins) == (30, False, ())
    result = agentwatch("serve", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())
    assert "see the docs" not in help_text
    assert "DATA_RETENTION_DAYS default 30: data older than this many days is DELETED" in help_text
    assert "(default 30, or DATA_RETENTION_DAYS; 0 keeps it forever)" in help_text  # --retention-days
    assert "ZERO_DATA_RETENTION default false" in help_text and "CORS_ORIGINS default none" in help_text
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "as in the product docs" not in readme
    assert "| `DATA_RETENTION_DAYS` (`--retention-days`) | 30 | **data older than this many days is deleted**" in readme
    for name in ("ZERO_DATA_RETENTION", "CORS_ORIGINS"):
        assert f"| `{name}`" in readme


@pytest.mark.parametrize("days", ["-1", "0", "nan", "inf", "1e300"])
def test_token_refuses_an_expiry_that_is_no_use(tmp_path: Path, days: str) -> None:
    env = {"JWT_SECRET": "an operator's secret of some length, 32+ bytes"}
    result = agentwatch("token", "create", "--role", "viewer", "--name", "alice", "--expires-days", days,
                        cwd=tmp_path, env=env)
    one_clear_line(result, "agentwatch token:", "--expires-days", "leave it out")
    assert result.stdout == ""  # no token printed, expired or not
    result = agentwatch("token", "create", "--role", "viewer", "--name", "alice", "--expires-days", "0.5",
                        cwd=tmp_path, env=env)
    assert result.returncode == 0 and result.stdout.count(".") == 2, result.stderr


def test_create_token_refuses_an_expiry_that_is_no_use() -> None:
    from agentwatch.server._auth import create_token

    for seconds in (-86400, 0, 0.5, float("nan"), float("inf"), 1e300):
        with pytest.raises(ValueError, match="must expire between 1 second"):
            create_token("secret", "viewer", "alice", expires_in_seconds=seconds)


def test_serve_names_the_flag_or_the_variable_that_is_wrong(tmp_path: Path) -> None:
    result = agentwatch("serve", "--port", "0", "--db", "r.db", "--retention-days", "-1", cwd=tmp_path)
    line = one_clear_line(result, "agentwatch serve:", "--retention-days", ">= 0")
    assert "DATA_RETENTION_DAYS" not in line  # the user set no variable
    result = agentwatch("serve", "--port", "0", "--db", "r.db", cwd=tmp_path, env={"DATA_RETENTION_DAYS": "-1"})
    one_clear_line(result, "agentwatch serve:", "DATA_RETENTION_DAYS", ">= 0")


@pytest.mark.parametrize("case", ["not a key", "a directory", "encrypted", "not RSA"])
def test_serve_refuses_a_signing_key_it_cannot_use_in_one_line(tmp_path: Path, case: str) -> None:
    """Found 2026-12-06: ``--signing-key`` naming a file that is no usable key printed a 30-line traceback from the
    server's start-up and exited with status 3."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = tmp_path / "key.pem"
    if case == "not a key":
        key.write_text("my shopping list\n")
    elif case == "a directory":
        key.mkdir()
    else:
        private = (rsa.generate_private_key(public_exponent=65537, key_size=1024) if case == "encrypted"
                   else ec.generate_private_key(ec.SECP256R1()))
        encryption = (serialization.BestAvailableEncryption(b"secret") if case == "encrypted"
                      else serialization.NoEncryption())
        key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                              encryption))
    result = agentwatch("serve", "--port", "0", "--db", "k.db", "--signing-key", str(key), cwd=tmp_path, timeout=60)
    one_clear_line(result, "agentwatch serve:", "signing key", str(key), "--signing-key")


@pytest.mark.parametrize(("args", "env", "named", "not_named"), [
    (["--store", "foo://x"], {}, "--store", "AGENTWATCH_STORE"),
    ([], {"AGENTWATCH_STORE": "foo://x"}, "AGENTWATCH_STORE", "--store"),
    (["--port", "70000"], {}, "--port", "PORT"),
    ([], {"PORT": "70000"}, "PORT", "--port"),
    (["--workers", "2"], {"AGENTWATCH_STORE": "chdb:///nowhere"}, "AGENTWATCH_STORE", "--store"),
    (["--workers", "2"], {"CLICKHOUSE_URL": "http://127.0.0.1:9"}, "CLICKHOUSE_URL", "AGENTWATCH_STORE"),
    # Found 2026-12-06 (server probe 13): a negative or zero interval started a collector that checked its rules
    # at the minimum pace, not the interval anyone asked for.
    (["--port", "0"], {"AGENTWATCH_ALERT_INTERVAL": "-5"}, "AGENTWATCH_ALERT_INTERVAL", "--port"),
    (["--port", "0"], {"AGENTWATCH_ALERT_INTERVAL": "0"}, "AGENTWATCH_ALERT_INTERVAL", "--port"),
], ids=["--store", "AGENTWATCH_STORE", "--port", "PORT", "--workers with AGENTWATCH_STORE",
        "--workers with CLICKHOUSE_URL", "AGENTWATCH_ALERT_INTERVAL<0", "AGENTWATCH_ALERT_INTERVAL=0"])
def test_serve_names_where_a_bad_value_came_from(tmp_path: Path, args: list[str], env: dict[str, str], named: str,
                                                 not_named: str) -> None:
    """Found 2026-12-06: AGENTWATCH_STORE=foo://x was refused as "--store must be ...", a flag the user never gave,
    and PORT=70000 as "port out of range" (which setting, from where?)."""
    result = agentwatch("serve", "--db", "r.db", *args, cwd=tmp_path, env=env)
    line = one_clear_line(result, "agentwatch serve:", named)
    assert not_named not in line
    assert not (tmp_path / "r.db").exists()


def test_serve_stores_in_the_clickhouse_server_clickhouse_url_names(tmp_path: Path) -> None:
    """The product docs' CLICKHOUSE_URL (with CLICKHOUSE_DB). Found 2026-12-06: it was not read, and the collector
    silently stored in a SQLite file instead. Here the server it names does not answer: serve says so, and makes no
    SQLite file."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = int(probe.getsockname()[1])  # nothing listens once the socket is closed
    result = agentwatch("serve", "--db", "r.db", "--port", "0", cwd=tmp_path, timeout=60,
                        env={"CLICKHOUSE_URL": f"http://127.0.0.1:{closed}", "CLICKHOUSE_DB": "aw"})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert f"agentwatch serve: cannot open clickhouse://127.0.0.1:{closed}/aw" in result.stderr
    assert not (tmp_path / "r.db").exists()
    settings = Settings.from_env({"CLICKHOUSE_URL": "https://u:p@ch.example:8443", "CLICKHOUSE_DB": "aw"})
    assert settings.store_url == "clickhouses://u:p@ch.example:8443/aw"
    assert Settings.from_env({"CLICKHOUSE_URL": "http://ch:8123", "AGENTWATCH_STORE": "chdb:///d"}).store_url == \
        "chdb:///d"
    with pytest.raises(ValueError, match="CLICKHOUSE_URL"):
        Settings.from_env({"CLICKHOUSE_URL": "ch:8123"})


def test_a_second_demo_run_sums_up_itself_not_the_database(tmp_path: Path) -> None:
    # `agentwatch demo` twice in one directory: the second run's database holds both runs.
    def summary() -> tuple[list[str], str]:
        result = agentwatch("demo", "--no-serve", "--port", "0", cwd=tmp_path, timeout=180)
        assert result.returncode == 0, result.stderr
        tail = result.stdout.split("Summary of this run", 1)[1]
        figures = [line for line in tail.splitlines()
                   if line.startswith("  traces ") or "LLM calls" in line or line.startswith("  breaker ")]
        return figures, tail

    first, first_text = summary()
    second, second_text = summary()
    assert first and any("blocked calls 1" in line for line in first), first_text
    assert second == first  # the same figures: not the two runs added up
    assert "earlier runs" not in first_text
    traces = first[0].split(",")[0].split()[-1]  # "  traces 4, spans 25, ..."
    assert f"the database also holds {traces} traces of earlier runs" in second_text


def test_a_ctrl_c_inside_a_class_being_built_is_told_from_an_error() -> None:
    """Found 2026-12-07 in CI: Ctrl-C that landed while ``init()`` built its configuration's dataclass reached the
    demo as a RuntimeError (Python wraps what a field's ``__set_name__`` raises), printed a traceback and exited 1."""
    class Interrupted:
        def __set_name__(self, owner: type, name: str) -> None:
            raise Terminated

    with pytest.raises(RuntimeError) as built:
        type("Config", (), {"field": Interrupted()})
    assert isinstance(interrupt_behind(built.value), Terminated)
    assert interrupt_behind(RuntimeError("a bug")) is None
