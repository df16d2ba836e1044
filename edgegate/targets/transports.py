"""How EdgeGate reaches a board: adb (adbutils) or ssh (paramiko). push, pull, exec, nothing else.

Both transports share the failure policy: a connection that drops is re-opened up to
``reconnect_attempts`` times (with a short back-off) and the operation retried, then the
operation fails with a ``ConnectionLost`` that says what was being done. Every network call has
a timeout, so nothing waits forever. Commands are built by the caller as argv lists and quoted
here with ``shlex.join`` (a POSIX shell runs them on both Linux boards and Android).

ssh host keys are verified: against ``known_hosts`` (the device's file, else ``~/.ssh/known_hosts``)
or an explicit ``trust_host_key: SHA256:...`` pin. An unknown host is refused with its fingerprint
and the option that trusts it. Key passphrases come from $EDGEGATE_SSH_KEY_PASSPHRASE and are
never logged; neither are key contents.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import shlex
import socket
import stat
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence, TypeVar

from edgegate.errors import InputError, TargetError

log = logging.getLogger(__name__)
T = TypeVar("T")


class TransportError(TargetError):
    """A command, a transfer or the connection to the board failed."""


class ConnectionLost(TransportError):
    """The connection dropped and could not be re-opened within the allowed attempts."""


class CommandTimeout(TransportError):
    """A remote command did not finish within its timeout."""


class HostKeyError(TransportError):
    """The board's ssh host key is unknown or does not match: fix the device file (exit 2)."""

    exit_code = 2


class _Dropped(Exception):
    """Internal: the connection is gone; reconnect and retry."""


@dataclass(frozen=True)
class ExecResult:
    rc: int
    stdout: str
    stderr: str

    def tail(self, lines: int = 3) -> str:
        text = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " | ".join(text[-lines:]) if text else "no output"


class Transport(Protocol):
    description: str  # "ssh root@rb5:22", "adb 1234abcd@127.0.0.1:5037": for messages

    def exec(self, command: Sequence[str] | str, *, timeout: float | None = None, retry: bool = True) -> ExecResult: ...

    def push(self, local: Path, remote: str) -> None: ...

    def pull(self, remote: str, local: Path) -> None: ...

    def mkdir(self, remote: str) -> None: ...

    def rm(self, remote: str) -> None: ...

    def close(self) -> None: ...


def command_line(command: Sequence[str] | str) -> str:
    """A shell command line; argv lists are quoted element by element."""
    return command if isinstance(command, str) else shlex.join(command)


class _RetryingTransport(ABC):
    """Connect lazily; on a dropped connection reconnect (bounded) and retry the operation."""

    description = "board"

    def __init__(self, *, connect_timeout: float, command_timeout: float, reconnect_attempts: int) -> None:
        self.connect_timeout = connect_timeout
        self.command_timeout = command_timeout
        self.reconnect_attempts = reconnect_attempts
        self.reconnects = 0  # how many times a dropped connection was re-opened (for reports)
        self._opened = False

    # subclasses: _connect() opens or raises (_Dropped for retryable), _disconnect() forgets
    @abstractmethod
    def _connect(self) -> None: ...

    @abstractmethod
    def _disconnect(self) -> None: ...

    @abstractmethod
    def _connected(self) -> bool: ...

    def connect(self) -> None:
        self._with_reconnect("connect", lambda: None)

    def _with_reconnect(self, what: str, op: Callable[[], T], retry: bool = True) -> T:
        attempts = self.reconnect_attempts + 1 if retry else 1
        last: BaseException | None = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 4.0))
                log.warning("%s: reconnecting (attempt %d of %d) after: %s",
                            self.description, attempt, self.reconnect_attempts, last)
            try:
                if not self._connected():
                    self._connect()
                    if self._opened:
                        self.reconnects += 1
                    self._opened = True
                return op()
            except _Dropped as exc:
                last = exc.__cause__ or exc
                self._disconnect()
        tried = f" and {attempts - 1} reconnect attempt(s) failed" if attempts > 1 else ""
        raise ConnectionLost(f"{self.description}: connection lost during {what}{tried}: {last}")

    def mkdir(self, remote: str) -> None:
        res = self.exec(["mkdir", "-p", remote])
        if res.rc != 0:
            raise TransportError(f"{self.description}: cannot create {remote}: {res.tail()}")

    def rm(self, remote: str) -> None:
        res = self.exec(["rm", "-rf", remote])
        if res.rc != 0:
            raise TransportError(f"{self.description}: cannot remove {remote}: {res.tail()}")

    def exec(self, command: Sequence[str] | str, *, timeout: float | None = None, retry: bool = True) -> ExecResult:
        line = command_line(command)
        log.debug("%s $ %s", self.description, line)
        limit = self.command_timeout if timeout is None else timeout
        return self._with_reconnect(f"'{_short(line)}'", lambda: self._exec(line, limit), retry)

    def push(self, local: Path, remote: str) -> None:
        self._with_reconnect(f"push of {local.name}", lambda: self._push(Path(local), remote))

    def pull(self, remote: str, local: Path) -> None:
        Path(local).parent.mkdir(parents=True, exist_ok=True)
        self._with_reconnect(f"pull of {remote}", lambda: self._pull(remote, Path(local)))

    @abstractmethod
    def _exec(self, line: str, timeout: float) -> ExecResult: ...

    @abstractmethod
    def _push(self, local: Path, remote: str) -> None: ...

    @abstractmethod
    def _pull(self, remote: str, local: Path) -> None: ...

    def close(self) -> None:
        self._disconnect()
        self._opened = False


def _short(line: str, n: int = 60) -> str:
    return line if len(line) <= n else line[: n - 3] + "..."


# ----------------------------------------------------------------------------------- ssh


def ssh_fingerprint(key: Any) -> str:
    """OpenSSH's SHA256 fingerprint of a paramiko public key ('SHA256:' + unpadded base64)."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class SshTransport(_RetryingTransport):
    """paramiko SSHClient + SFTP, host key verified; one connection, re-opened when it drops."""

    def __init__(
        self,
        host: str,
        user: str,
        *,
        port: int = 22,
        key_file: str | None = None,
        known_hosts: str | None = None,
        trust_host_key: str | None = None,
        device_file: str = "the device file",
        connect_timeout: float = 10.0,
        command_timeout: float = 600.0,
        reconnect_attempts: int = 3,
    ) -> None:
        super().__init__(connect_timeout=connect_timeout, command_timeout=command_timeout,
                         reconnect_attempts=reconnect_attempts)
        self.host, self.port, self.user = host, port, user
        self.key_file = str(Path(key_file).expanduser()) if key_file else None
        self.known_hosts = Path(known_hosts).expanduser() if known_hosts else None
        self.trust_host_key = trust_host_key
        self.device_file = device_file
        self.description = f"ssh {user}@{host}:{port}"
        self._client: Any = None
        self._sftp: Any = None
        if self.known_hosts is not None and not self.known_hosts.is_file():
            raise InputError(f"{device_file}: known_hosts: file not found: {self.known_hosts}")
        if self.key_file is not None and not Path(self.key_file).is_file():
            raise InputError(f"{device_file}: key_file: file not found: {self.key_file}")

    def _connected(self) -> bool:
        t = self._client.get_transport() if self._client is not None else None
        return bool(t is not None and t.is_active())

    def _connect(self) -> None:
        import paramiko

        self._disconnect()  # a dropped connection's client and SFTP session are stale
        client = paramiko.SSHClient()
        if self.known_hosts is not None:
            client.load_host_keys(str(self.known_hosts))
            where = str(self.known_hosts)
        else:
            client.load_system_host_keys()
            where = "~/.ssh/known_hosts"
        client.set_missing_host_key_policy(_VerifyHostKey(self, where))
        try:
            client.connect(
                self.host, self.port, username=self.user, key_filename=self.key_file,
                passphrase=os.environ.get("EDGEGATE_SSH_KEY_PASSPHRASE") or None,
                timeout=self.connect_timeout, banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout, channel_timeout=self.connect_timeout,
                allow_agent=self.key_file is None, look_for_keys=self.key_file is None,
            )
        except HostKeyError:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                f"{self.description}: host key does not match {where}: the board offered "
                f"{ssh_fingerprint(exc.key)}, the file has {ssh_fingerprint(exc.expected_key)}; if the "
                f"board was re-installed, remove the old entry (ssh-keygen -R "
                f"'{_known_hosts_name(self.host, self.port)}' -f {where}) after checking the new key"
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            how = f"key file {self.key_file}" if self.key_file else "the ssh agent / ~/.ssh keys"
            raise TransportError(f"{self.description}: authentication failed with {how}: {exc}") from None
        except (OSError, EOFError, paramiko.SSHException) as exc:
            client.close()
            raise _Dropped() from exc
        transport = client.get_transport()
        if transport is not None:
            transport.set_keepalive(5)  # notice a dead board while waiting on a long command
        self._client = client

    def _disconnect(self) -> None:
        for thing in (self._sftp, self._client):
            if thing is not None:
                try:
                    thing.close()
                except Exception:  # noqa: BLE001 - closing a dead connection
                    pass
        self._sftp = self._client = None

    def _exec(self, line: str, timeout: float) -> ExecResult:
        import paramiko

        deadline = time.monotonic() + timeout
        try:
            chan = self._client.get_transport().open_session(timeout=self.connect_timeout)
            chan.exec_command(line)
            chan.shutdown_write()
            out, err = bytearray(), bytearray()
            idle = 0.002
            while True:
                busy = False
                while chan.recv_ready():
                    out += chan.recv(65536)
                    busy = True
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    busy = True
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                if chan.closed and not chan.recv_ready() and not chan.recv_stderr_ready():
                    if not self._connected():
                        raise _Dropped() from EOFError("connection closed by the board")
                    break
                if time.monotonic() > deadline:
                    chan.close()
                    raise CommandTimeout(f"{self.description}: '{_short(line)}' did not finish within {timeout:g} s")
                if busy:
                    idle = 0.002
                else:  # back off while the board works (a wait can last seconds)
                    time.sleep(idle)
                    idle = min(idle * 2, 0.05)
            rc = chan.recv_exit_status()
            chan.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise _Dropped() from exc
        if rc == -1 and not self._connected():
            raise _Dropped() from EOFError("connection closed before the command's exit status")
        return ExecResult(rc, out.decode(errors="replace"), err.decode(errors="replace"))

    def _sftp_client(self) -> Any:
        if self._sftp is None:
            self._sftp = self._client.open_sftp()
            self._sftp.get_channel().settimeout(self.command_timeout)
        return self._sftp

    def _transfer(self, what: str, op: Callable[[Any], None]) -> None:
        import paramiko

        try:
            op(self._sftp_client())
        except (OSError, EOFError, paramiko.SSHException) as exc:
            if self._connected() and isinstance(exc, OSError) and not isinstance(exc, socket.timeout):
                raise TransportError(f"{self.description}: {what}: {exc}") from None  # e.g. no such file
            raise _Dropped() from exc

    def _push(self, local: Path, remote: str) -> None:
        mode = stat.S_IMODE(local.stat().st_mode)

        def put(sftp: Any) -> None:
            sftp.put(str(local), remote)
            if mode & 0o111:  # executables (qnn-net-run, scripts) keep their x bits
                sftp.chmod(remote, mode)

        self._transfer(f"push {local} -> {remote}", put)

    def _pull(self, remote: str, local: Path) -> None:
        self._transfer(f"pull {remote}", lambda sftp: sftp.get(remote, str(local)))


class _VerifyHostKey:
    """paramiko policy for a host not in known_hosts: accept only the pinned fingerprint."""

    def __init__(self, transport: SshTransport, where: str) -> None:
        self.transport, self.where = transport, where

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        t = self.transport
        fp = ssh_fingerprint(key)
        if t.trust_host_key == fp:
            client.get_host_keys().add(hostname, key.get_name(), key)  # in memory only
            return
        pinned = f" (trust_host_key is {t.trust_host_key}, which does not match)" if t.trust_host_key else ""
        name = _known_hosts_name(t.host, t.port)
        raise HostKeyError(
            f"{t.description}: unknown host key {key.get_name()} {fp}{pinned}: not in {self.where}. "
            f"Check it on the board (ssh-keygen -lf /etc/ssh/ssh_host_{key.get_name().replace('ssh-', '')}_key.pub), "
            f"then set `trust_host_key: {fp}` in {t.device_file}, or add the board to known_hosts "
            f"(ssh-keyscan -p {t.port} {t.host} >> {self.where}; its entry is '{name}')"
        )


# ----------------------------------------------------------------------------------- adb


class AdbTransport(_RetryingTransport):
    """adbutils against an adb server (smart-socket protocol); shell v2 for stderr and exit codes."""

    def __init__(
        self,
        serial: str | None,
        *,
        adb_host: str = "127.0.0.1",
        adb_port: int = 5037,
        connect_timeout: float = 10.0,
        command_timeout: float = 600.0,
        reconnect_attempts: int = 3,
    ) -> None:
        super().__init__(connect_timeout=connect_timeout, command_timeout=command_timeout,
                         reconnect_attempts=reconnect_attempts)
        self.serial, self.adb_host, self.adb_port = serial, adb_host, adb_port
        self.description = f"adb {serial or '(only device)'}@{adb_host}:{adb_port}"
        self._device: Any = None

    def _connected(self) -> bool:
        return self._device is not None

    def _connect(self) -> None:
        import adbutils

        # adbutils would try to start a local adb binary when the server is not up: say so instead.
        try:
            socket.create_connection((self.adb_host, self.adb_port), timeout=self.connect_timeout).close()
        except OSError as exc:
            raise _Dropped() from OSError(
                f"adb server at {self.adb_host}:{self.adb_port} not reachable ({exc}); start it with "
                "`adb start-server` or set adb_host/adb_port in the device file"
            )
        client = adbutils.AdbClient(self.adb_host, self.adb_port, socket_timeout=self.connect_timeout)
        try:
            listed = client.list()
        except (adbutils.AdbError, OSError, EOFError) as exc:
            raise _Dropped() from exc
        states = {d.serial: d.state for d in listed}
        serial = self.serial
        if serial is None:
            ready = [s for s, st in states.items() if st == "device"]
            if len(ready) != 1:
                raise TransportError(
                    f"{self.description}: set serial in the device file; the adb server lists "
                    f"{', '.join(f'{s} ({st})' for s, st in states.items()) or 'no devices'}"
                )
            serial = ready[0]
        elif states.get(serial) != "device":
            state = states.get(serial, "absent")
            hint = " (accept the debugging prompt on the device)" if state == "unauthorized" else ""
            raise _Dropped() from OSError(f"device {serial} is {state}{hint}")
        self._device = client.device(serial)

    def _disconnect(self) -> None:
        self._device = None

    def _exec(self, line: str, timeout: float) -> ExecResult:
        import adbutils

        try:
            res = self._device.shell2(line, timeout=timeout, v2=True)
        except adbutils.AdbTimeout:
            raise CommandTimeout(f"{self.description}: '{_short(line)}' did not finish within {timeout:g} s") from None
        except (adbutils.AdbError, OSError, EOFError) as exc:
            raise _Dropped() from exc
        return ExecResult(int(res.returncode), res.stdout if res.stdout or res.stderr else res.output, res.stderr)

    def _push(self, local: Path, remote: str) -> None:
        import adbutils

        try:
            self._device.sync.push(local, remote, mode=stat.S_IMODE(local.stat().st_mode), check=True)
        except (adbutils.AdbError, OSError, EOFError) as exc:
            raise _Dropped() from exc

    def _pull(self, remote: str, local: Path) -> None:
        import adbutils

        try:
            info = self._device.sync.stat(remote)
            if not info.mode & stat.S_IFREG:
                raise TransportError(f"{self.description}: pull {remote}: no such file")
            self._device.sync.pull_file(remote, local)
        except (adbutils.AdbError, OSError, EOFError) as exc:
            raise _Dropped() from exc
