"""TEST FIXTURE: an adb server on loopback speaking enough of adb's protocols for adbutils.

There is no adb binary or Android device here, so this server plays both: the host-side
smart-socket protocol (a 4-hex-digit length + request, answered OKAY/FAIL) with ``host:version``,
``host:devices[-l]``, ``host:transport:<serial>``, ``host:tport:serial:<serial>``,
``host-serial:<serial>:features|get-state``, then the device services: ``shell:`` (v1: output then
close), ``shell,v2:`` (stdout/stderr/exit packets) and ``sync:`` (STAT, LIST, SEND with DATA/DONE,
RECV, QUIT). Shell commands run here with ``sh -c`` in the sandbox directory ``root``; file paths
are this machine's (it is the "device").

``state`` ("device", "offline", "unauthorized") is what ``host:devices`` reports and what a
transport request to the device is refused with; ``drop_next`` closes the next n device
connections without answering (a device that goes away).
"""

from __future__ import annotations

import os
import socket
import socketserver
import stat
import struct
import subprocess
import threading
from pathlib import Path

VERSION = 41  # adb 1.0.41: adbutils then uses host:tport:serial


def _recv_exact(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def _okay(self) -> None:
        self.request.sendall(b"OKAY")

    def _fail(self, msg: str) -> None:
        data = msg.encode()
        self.request.sendall(b"FAIL" + f"{len(data):04x}".encode() + data)

    def _block(self, text: str) -> None:
        data = text.encode()
        self.request.sendall(f"{len(data):04x}".encode() + data)

    def handle(self) -> None:
        srv = self.server
        try:
            while True:
                try:
                    size = int(_recv_exact(self.request, 4), 16)
                except EOFError:
                    return
                req = _recv_exact(self.request, size).decode()
                srv.requests.append(req)
                if req == "host:version":
                    self._okay()
                    self._block(f"{VERSION:04x}")
                    return
                if req in ("host:devices", "host:devices-l"):
                    extra = " product:fake model:EdgeGate_fake device:fake transport_id:1" if req.endswith("-l") else ""
                    self._okay()
                    self._block(f"{srv.serial}\t{srv.state}{extra}\n")
                    return
                if req.startswith("host-serial:"):
                    serial, _, cmd = req[len("host-serial:"):].rpartition(":")
                    if serial != srv.serial:
                        return self._fail(f"device '{serial}' not found")
                    self._okay()
                    self._block("shell_v2,cmd,stat_v2,ls_v2,fixed_push_mkdir" if cmd == "features" else srv.state)
                    return
                if req.startswith(("host:transport:", "host:tport:serial:", "host:transport-id:")):
                    serial = req.rsplit(":", 1)[1]
                    if not req.startswith("host:transport-id:") and serial != srv.serial:
                        return self._fail(f"device '{serial}' not found")
                    if srv.state != "device":
                        return self._fail(f"device {srv.serial} is {srv.state}")
                    with srv.lock:
                        if srv.drop_next > 0:
                            srv.drop_next -= 1
                            return  # the device went away: close without an answer
                    self._okay()
                    if req.startswith("host:tport:"):
                        self.request.sendall(struct.pack("<Q", 1))
                    continue
                if req.startswith("shell,v2:") or req.startswith("shell,v2,"):
                    return self._shell(req.split(":", 1)[1], v2=True)
                if req.startswith("shell:"):
                    return self._shell(req[len("shell:"):], v2=False)
                if req == "sync:":
                    self._okay()
                    return self._sync()
                return self._fail(f"unknown request: {req}")
        except (EOFError, ConnectionError):
            return

    def _shell(self, command: str, *, v2: bool) -> None:
        self._okay()
        proc = subprocess.run(["sh", "-c", command], cwd=self.server.root, capture_output=True,
                              stdin=subprocess.DEVNULL)
        if not v2:
            self.request.sendall(proc.stdout + proc.stderr)
            return
        for pid, data in ((1, proc.stdout), (2, proc.stderr)):
            if data:
                self.request.sendall(bytes([pid]) + struct.pack("<I", len(data)) + data)
        self.request.sendall(bytes([3]) + struct.pack("<I", 1) + bytes([proc.returncode & 0xFF]))

    def _sync(self) -> None:
        conn = self.request
        while True:
            try:
                ident = _recv_exact(conn, 4).decode()
            except EOFError:
                return
            (n,) = struct.unpack("<I", _recv_exact(conn, 4))
            arg = _recv_exact(conn, n).decode() if ident != "DONE" else ""
            if ident == "QUIT":
                return
            if ident == "STAT":
                try:
                    st = os.stat(arg)
                    conn.sendall(b"STAT" + struct.pack("<III", st.st_mode, st.st_size & 0xFFFFFFFF, int(st.st_mtime)))
                except OSError:
                    conn.sendall(b"STAT" + struct.pack("<III", 0, 0, 0))
            elif ident == "LIST":
                for entry in sorted(Path(arg).iterdir()) if Path(arg).is_dir() else []:
                    st = entry.stat()
                    name = entry.name.encode()
                    conn.sendall(b"DENT" + struct.pack("<IIII", st.st_mode, st.st_size, int(st.st_mtime), len(name)) + name)
                conn.sendall(b"DONE" + bytes(16))
            elif ident == "SEND":
                path, _, mode = arg.rpartition(",")
                target = Path(path)
                target.parent.mkdir(parents=True, exist_ok=True)
                with target.open("wb") as fh:
                    while True:
                        kind = _recv_exact(conn, 4)
                        (size,) = struct.unpack("<I", _recv_exact(conn, 4))
                        if kind == b"DONE":
                            break
                        fh.write(_recv_exact(conn, size))
                os.chmod(target, stat.S_IMODE(int(mode)))
                conn.sendall(b"OKAY" + bytes(4))
            elif ident == "RECV":
                try:
                    data = Path(arg).read_bytes()
                except OSError as exc:
                    msg = str(exc).encode()
                    conn.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                    continue
                for i in range(0, len(data), 64 * 1024):
                    chunk = data[i:i + 64 * 1024]
                    conn.sendall(b"DATA" + struct.pack("<I", len(chunk)) + chunk)
                conn.sendall(b"DONE" + bytes(4))
            else:
                msg = f"unknown sync request {ident}".encode()
                conn.sendall(b"FAIL" + struct.pack("<I", len(msg)) + msg)
                return


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, serial: str, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.serial, self.root = serial, root
        self.state = "device"
        self.drop_next = 0
        self.lock = threading.Lock()
        self.requests: list[str] = []


class FakeAdbServer:
    """Start with ``FakeAdbServer(root).start()``; ``port`` is where adbutils should connect."""

    def __init__(self, root: Path, serial: str = "edgegate-fake-0001") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.server = _Server(serial, root)
        self.port = self.server.server_address[1]
        self.serial = serial
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeAdbServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    def set_state(self, state: str) -> None:
        self.server.state = state

    def drop(self, connections: int) -> None:
        """Close the next ``connections`` device connections without an answer."""
        with self.server.lock:
            self.server.drop_next = connections
