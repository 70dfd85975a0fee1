"""Processes and ports: the loopback address every service binds, the errors a start or a stop
reports, which program holds a port, and the server processes `docflow up` started, known by
their pid files."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psutil

LOOPBACK = "127.0.0.1"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}

Echo = Callable[[str], None]


class ServiceError(RuntimeError):
    """A service could not be started, stopped or reached; the message says what to do."""


class PortInUse(ServiceError):
    def __init__(self, port: int, service: str):
        self.port, self.service = port, service
        holder = port_holder(port)
        super().__init__(
            f"port {port} on {LOOPBACK} (needed by {service}) is already in use by "
            f"{holder or 'another program'}; stop that program or choose another port in the "
            f"settings"
        )


def port_holder(port: int) -> str | None:
    """Which process holds a local port, in words ("pid 123 (nginx), listening"), or None when
    the system does not say (another user's process seen without privileges)."""
    try:
        connections = psutil.net_connections(kind="inet")
    except (psutil.Error, OSError):
        return None
    for conn in connections:
        if conn.laddr and conn.laddr.port == port and conn.pid is not None:
            try:
                name = psutil.Process(conn.pid).name()
            except psutil.Error:
                name = "exited"
            what = "listening" if conn.status == psutil.CONN_LISTEN else "a connection's local end"
            return f"pid {conn.pid} ({name}), {what}"
    return None


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket() as s:
        # SO_REUSEADDR as the servers themselves set it: a port in TIME_WAIT counts as free,
        # a port another program listens on does not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class ManagedProcess:
    """A server process recorded by pid file. It counts as ours only while the process with that
    pid still has `marker` (its data directory) on its command line, so a reused pid is never
    signalled."""

    name: str
    pid_file: Path
    marker: str

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().split()[0])
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            if any(self.marker in arg for arg in proc.cmdline()):
                return pid
        except (FileNotFoundError, ValueError, IndexError, psutil.Error):
            pass
        return None

    def record(self, pid: int) -> None:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.write_text(f"{pid}\n")

    def stop(self, graceful: signal.Signals = signal.SIGTERM, timeout: float = 30.0) -> bool:
        """Send `graceful`, wait, then SIGKILL the process and its children. True if it ran."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        proc = psutil.Process(pid)
        children = proc.children(recursive=True)
        proc.send_signal(graceful)
        try:
            proc.wait(timeout)
        except psutil.TimeoutExpired:
            for p in [proc, *children]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    p.kill()
            psutil.wait_procs([proc, *children], timeout=10)
        self.pid_file.unlink(missing_ok=True)
        return True
