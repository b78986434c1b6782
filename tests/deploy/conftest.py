"""The deploy tests' device: a real OpenSSH server on 127.0.0.1 (tests/sshd_server.py), one per session."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
from sshd_server import Sshd, start_sshd, stop_sshd


@pytest.fixture(scope="session")
def sshd(tmp_path_factory) -> Iterator[Sshd]:
    server, proc = start_sshd(tmp_path_factory.mktemp("sshd"))
    try:
        yield server
    finally:
        stop_sshd(proc)
