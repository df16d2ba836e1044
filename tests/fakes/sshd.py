"""TEST FIXTURE: a real OpenSSH server on loopback, so the ssh transport is tested for real.

``start_sshd(tmp)`` generates an ed25519 host key and a user key in ``tmp``, writes an
``sshd_config`` (127.0.0.1, a free port, public-key auth only, the current user; root with
``PermitRootLogin prohibit-password``) and a ``known_hosts`` holding the host key, and starts
``/usr/sbin/sshd -D``. ``.ci/run`` installs Debian's openssh-server; without ``/usr/sbin/sshd``
the fixture skips with the reason.

``drop_connections()`` kills the per-connection server processes this sshd started (a dropped
link, as when a board's Wi-Fi goes); ``stop()`` / ``start()`` take the whole server down and up.
Only processes this fixture started are signalled, by pid.
"""

from __future__ import annotations

import os
import pwd
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


@dataclass
class Sshd:
    dir: Path
    port: int
    user: str
    key_file: Path
    known_hosts: Path
    host_pub: Path
    config: Path
    proc: subprocess.Popen | None = None
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.dir / "sshd.log"

    def fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-lf", str(self.host_pub)], capture_output=True, text=True, check=True)
        return out.stdout.split()[1]  # "256 SHA256:... comment (ED25519)"

    def start(self) -> None:
        with self.log.open("a") as fh:
            self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.config)], stdout=fh, stderr=fh)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited {self.proc.returncode}: {self.log.read_text()[-500:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log.read_text()[-500:]}")

    def drop_connections(self) -> int:
        """Kill the per-connection sshd processes: every open ssh connection drops."""
        if self.proc is None:
            return 0
        kids = _children(self.proc.pid)
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(kids)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.drop_connections()
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


def start_sshd(tmp: Path) -> Sshd:
    if not SSHD.is_file():
        pytest.skip("OpenSSH server not installed (/usr/sbin/sshd); .ci/run installs Debian's openssh-server")
    tmp.mkdir(parents=True, exist_ok=True)
    user = pwd.getpwuid(os.geteuid()).pw_name
    for name in ("host_ed25519", "user_ed25519"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"edgegate-test-{name}",
                        "-f", str(tmp / name)], check=True)
    (tmp / "authorized_keys").write_text((tmp / "user_ed25519.pub").read_text())
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    port = _free_port()
    config = tmp / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {tmp / 'host_ed25519'}",
        f"PidFile {tmp / 'sshd.pid'}",
        f"AuthorizedKeysFile {tmp / 'authorized_keys'}",
        f"AllowUsers {user}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        "Subsystem sftp internal-sftp",
        "LogLevel ERROR",
        "",
    ]))
    host_pub = tmp / "host_ed25519.pub"
    kind, b64 = host_pub.read_text().split()[:2]
    known_hosts = tmp / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {kind} {b64}\n")
    server = Sshd(tmp, port, user, tmp / "user_ed25519", known_hosts, host_pub, config)
    server.start()
    return server
