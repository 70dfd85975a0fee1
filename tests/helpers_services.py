"""Ports and environments for the services the tests (and bench.soak) start themselves."""

from __future__ import annotations

import os
import secrets
import socket
import sys
from pathlib import Path


def free_port_block(size: int, start: int = 10000, end: int = 22000) -> int:
    """A base port such that base..base+size-1 and base+10000.. are all free on 127.0.0.1.

    Both blocks stay below Linux's ephemeral range (32768-60999): a port there can be taken at
    any moment by an outgoing connection, between this check and the server's bind."""
    rng = secrets.SystemRandom()
    for _ in range(200):
        base = rng.randrange(start, end - size)
        ports = [base + i for i in range(size)] + [base + 10000 + i for i in range(size)]
        if all(port_free(p) for p in ports):
            return base
    raise RuntimeError("no free block of ports on 127.0.0.1")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def script_env(**extra: str) -> dict[str, str]:
    """This environment with the virtualenv's bin first on PATH (the deploy/local scripts run
    its `prefect`, `weed` and friends), plus `extra`."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    env.update(extra)
    return env
