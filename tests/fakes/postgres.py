"""A throwaway PostgreSQL server for tests, started from Debian's binaries.

``start_postgres()`` runs ``initdb`` and ``pg_ctl start`` on a free loopback port in a fresh
temporary directory and returns a handle with a SQLAlchemy URL (psycopg 3 driver);
``stop()`` removes everything. PostgreSQL refuses to run as root, so as root the server runs
as the ``postgres`` system user (created by the Debian package; created here with
``useradd`` when missing). ``.ci/run`` installs the ``postgresql`` package; without its
binaries the fixture skips with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

PG_USER = "edgegate"
SYSTEM_USER = "postgres"


def find_pg_bin() -> Path | None:
    """The newest /usr/lib/postgresql/N/bin holding initdb and pg_ctl, else one on PATH."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True)
    return ["runuser", "-u", SYSTEM_USER, "--", *cmd]


@dataclass
class PostgresServer:
    bin_dir: Path
    root: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/postgres"

    def database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={PG_USER} dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://{PG_USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        subprocess.run(
            _as_server_user([str(self.bin_dir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """Start a server in a new temporary directory (skips the test when PostgreSQL is missing)."""
    bin_dir = find_pg_bin()
    if bin_dir is None or not (bin_dir / "pg_ctl").is_file():
        pytest.skip("PostgreSQL server binaries not found (apt-get install postgresql; .ci/run does)")
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install -e '.[test]')")
    root = Path(tempfile.mkdtemp(prefix="edgegate-pg-"))
    if os.geteuid() == 0:
        _as_server_user(["true"])  # creates the user when missing
        shutil.chown(root, SYSTEM_USER)
    data, sock = root / "data", root / "sock"
    port = _free_port()
    run = lambda cmd: subprocess.run(_as_server_user(cmd), capture_output=True, text=True)  # noqa: E731
    r = run([str(bin_dir / "initdb"), "-D", str(data), "-U", PG_USER, "--auth=trust", "-E", "UTF8", "--no-sync"])
    if r.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {r.stderr.strip()}")
    run(["mkdir", "-p", str(sock)])
    opts = (f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off -c max_connections=200")
    r = run([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "server.log"), "-w", "start"])
    server = PostgresServer(bin_dir, root, port)
    if r.returncode != 0:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        server.stop()
        raise RuntimeError(f"pg_ctl start failed: {r.stderr.strip()} {log[-500:]}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return server
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"PostgreSQL did not listen on 127.0.0.1:{port} within 30 s")


@pytest.fixture(scope="session")
def postgres_server():
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
