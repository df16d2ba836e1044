"""The transports for real: ssh against an OpenSSH server on loopback (tests/fakes/sshd.py),
adb against a server speaking adb's smart-socket and sync protocols (tests/fakes/adb_server.py)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fakes.adb_server import FakeAdbServer
from fakes.sshd import start_sshd

from edgegate.errors import InputError
from edgegate.targets.transports import (
    AdbTransport,
    CommandTimeout,
    ConnectionLost,
    HostKeyError,
    SshTransport,
    TransportError,
)

pytestmark = pytest.mark.slow  # real servers on loopback
TRICKY = ["printf", "%s|", "two words", "it's", "$HOME", "a;b", "*"]


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def _ssh(sshd, **kw) -> SshTransport:
    kw.setdefault("known_hosts", str(sshd.known_hosts))
    kw.setdefault("connect_timeout", 5.0)
    kw.setdefault("reconnect_attempts", 2)
    return SshTransport("127.0.0.1", sshd.user, port=sshd.port, key_file=str(sshd.key_file), **kw)


def _roundtrip(t, tmp: Path, remote_dir: Path) -> None:
    """push, pull and exec as a board would see them: quoting, exit codes, stderr, bytes."""
    res = t.exec(TRICKY)
    assert (res.rc, res.stdout) == (0, "two words|it's|$HOME|a;b|*|")  # nothing expanded
    res = t.exec("echo out; echo err >&2; exit 7")
    assert (res.rc, res.stdout, res.stderr) == (7, "out\n", "err\n")
    payload = bytes(range(256)) * 4096
    (tmp / "blob.bin").write_bytes(payload)
    t.mkdir(str(remote_dir / "a dir"))
    t.push(tmp / "blob.bin", str(remote_dir / "a dir" / "blob.bin"))
    assert (remote_dir / "a dir" / "blob.bin").read_bytes() == payload
    t.pull(str(remote_dir / "a dir" / "blob.bin"), tmp / "back" / "blob.bin")
    assert (tmp / "back" / "blob.bin").read_bytes() == payload
    with pytest.raises(TransportError, match="(?i)no such file"):
        t.pull(str(remote_dir / "missing.raw"), tmp / "x")
    t.rm(str(remote_dir / "a dir"))
    assert not (remote_dir / "a dir").exists()


# ----------------------------------------------------------------------------------- ssh


def test_ssh_push_pull_exec(sshd, tmp_path: Path) -> None:
    t = _ssh(sshd)
    try:
        _roundtrip(t, tmp_path, tmp_path / "remote")
    finally:
        t.close()


def test_ssh_unknown_host_names_fingerprint_and_option(sshd, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    fp = sshd.fingerprint()
    with pytest.raises(HostKeyError) as info:
        _ssh(sshd, known_hosts=str(empty), device_file="devices/bench.yaml").exec("true")
    msg = str(info.value)
    assert f"unknown host key ssh-ed25519 {fp}" in msg
    assert f"set `trust_host_key: {fp}` in devices/bench.yaml" in msg
    assert f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {empty}" in msg
    assert info.value.exit_code == 2
    # Pinning exactly that fingerprint trusts it (in memory: the file stays empty).
    t = _ssh(sshd, known_hosts=str(empty), trust_host_key=fp)
    assert t.exec("true").rc == 0
    t.close()
    assert empty.read_text() == ""
    wrong = "SHA256:" + "A" * 43
    with pytest.raises(HostKeyError, match="does not match"):
        _ssh(sshd, known_hosts=str(empty), trust_host_key=wrong).exec("true")


def test_ssh_changed_host_key_is_refused(sshd, tmp_path: Path) -> None:
    other = tmp_path / "known_hosts"
    import subprocess

    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    kind, b64 = (tmp_path / "k.pub").read_text().split()[:2]
    other.write_text(f"[127.0.0.1]:{sshd.port} {kind} {b64}\n")
    with pytest.raises(HostKeyError, match="host key does not match"):
        _ssh(sshd, known_hosts=str(other)).exec("true")


def test_ssh_missing_known_hosts_file_is_input_error(sshd, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="known_hosts: file not found"):
        _ssh(sshd, known_hosts=str(tmp_path / "nope"))


def test_ssh_dropped_connection_reconnects(sshd, tmp_path: Path) -> None:
    t = _ssh(sshd)
    try:
        assert t.exec("echo one").stdout == "one\n"
        assert sshd.drop_connections() >= 1
        time.sleep(0.2)
        assert t.exec("echo two").stdout == "two\n"
        assert t.reconnects == 1
    finally:
        t.close()


def test_ssh_command_timeout(sshd) -> None:
    t = _ssh(sshd)
    try:
        started = time.monotonic()
        with pytest.raises(CommandTimeout, match="did not finish within 0.5 s"):
            t.exec(["sleep", "5"], timeout=0.5)
        assert time.monotonic() - started < 4
        assert t.exec("echo still usable").rc == 0
    finally:
        t.close()


def test_ssh_server_gone_fails_after_bounded_retries(tmp_path: Path) -> None:
    server = start_sshd(tmp_path / "sshd")
    t = SshTransport("127.0.0.1", server.user, port=server.port, key_file=str(server.key_file),
                     known_hosts=str(server.known_hosts), connect_timeout=2.0, reconnect_attempts=2)
    assert t.exec("true").rc == 0
    server.stop()
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="2 reconnect attempt\\(s\\) failed"):
        t.exec("true")
    assert time.monotonic() - started < 15


# ----------------------------------------------------------------------------------- adb


@pytest.fixture()
def adb(tmp_path: Path):
    server = FakeAdbServer(tmp_path / "device").start()
    yield server
    server.stop()


def _adb(adb, **kw) -> AdbTransport:
    kw.setdefault("reconnect_attempts", 2)
    return AdbTransport(adb.serial, adb_port=adb.port, connect_timeout=3.0, **kw)


def test_adb_push_pull_exec(adb, tmp_path: Path) -> None:
    _roundtrip(_adb(adb), tmp_path, tmp_path / "device" / "data")
    assert any(r.startswith("shell,v2:") for r in adb.requests)  # stderr and exit codes from shell v2
    assert "sync:" in adb.requests


def test_adb_dropped_connection_reconnects(adb) -> None:
    t = _adb(adb)
    assert t.exec("echo one").stdout == "one\n"
    adb.drop(1)
    assert t.exec("echo two").stdout == "two\n"
    assert t.reconnects == 1


def test_adb_offline_device_fails_after_bounded_retries(adb) -> None:
    t = _adb(adb)
    adb.set_state("offline")
    with pytest.raises(ConnectionLost, match="device edgegate-fake-0001 is offline"):
        t.exec("true")


def test_adb_no_server_says_how_to_start_it() -> None:
    t = AdbTransport(None, adb_port=1, connect_timeout=1.0, reconnect_attempts=0)
    with pytest.raises(ConnectionLost, match="adb server at 127.0.0.1:1 not reachable.*adb start-server"):
        t.exec("true")


def test_adb_serial_required_when_several_or_none(adb) -> None:
    t = AdbTransport("other-serial", adb_port=adb.port, connect_timeout=1.0, reconnect_attempts=0)
    with pytest.raises(ConnectionLost, match="device other-serial is absent"):
        t.exec("true")
    assert AdbTransport(None, adb_port=adb.port, connect_timeout=1.0).exec("echo hi").stdout == "hi\n"
