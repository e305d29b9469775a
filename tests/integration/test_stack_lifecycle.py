"""`slotstream stack up | status | down` as a user runs it, on a second stack with its
own ports and state directory (the shared stack of the other tests keeps running)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from slotstream.errors import PortInUseError
from slotstream.settings import KafkaSettings, Settings, StackSettings
from slotstream.stack.kafka import KafkaBroker
from slotstream.stack.process import alive, port_open

pytestmark = pytest.mark.integration

PORTS = {"kafka": 19092, "controller": 19093, "postgres": 15433}


@pytest.fixture
def second_stack(stack: Settings) -> Iterator[dict[str, str]]:
    # /var/tmp, not pytest's tmp_path: the postgres user must reach the data directory.
    state = Path(tempfile.mkdtemp(prefix="slotstream-lifecycle-", dir="/var/tmp"))
    state.chmod(0o755)
    env = {
        **os.environ,
        "SLOTSTREAM_STACK__STATE_DIR": str(state),
        "SLOTSTREAM_STACK__CACHE_DIR": str(stack.stack.cache_dir),  # reuse jars and builds
        "SLOTSTREAM_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{PORTS['kafka']}",
        "SLOTSTREAM_KAFKA__CONTROLLER_PORT": str(PORTS["controller"]),
        "SLOTSTREAM_KAFKA__HEAP": "512m",
        "SLOTSTREAM_POSTGRES__PORT": str(PORTS["postgres"]),
    }
    yield env
    _cli(env, "stack", "down", check=False)
    shutil.rmtree(state, ignore_errors=True)


def _cli(env: dict[str, str], *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "slotstream", *args],
        env={**env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if check and result.returncode != 0:
        pytest.fail(f"slotstream {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def _pids(status_output: str) -> dict[str, int]:
    pids = {}
    for line in status_output.splitlines():
        words = line.split()
        if len(words) > 3 and words[2] == "pid" and words[3].isdigit():
            pids[words[0]] = int(words[3])
    return pids


def _processes_under(path: Path) -> list[int]:
    """Pids whose command line mentions ``path`` (orphans of a stack)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(path) in cmdline and alive(int(proc.name)):
                found.append(int(proc.name))
    return found


def test_up_twice_status_down(second_stack: dict[str, str]) -> None:
    state = Path(second_stack["SLOTSTREAM_STACK__STATE_DIR"])
    _cli(second_stack, "stack", "up")
    first = _pids(_cli(second_stack, "stack", "status").stdout)
    assert set(first) == {"kafka", "timescaledb"}

    again = _cli(second_stack, "stack", "up")  # a no-op: same processes
    assert _pids(again.stdout) == first
    status = _cli(second_stack, "stack", "status")
    assert status.stdout.count("healthy") == 2 and "unhealthy" not in status.stdout

    _cli(second_stack, "stack", "down")
    assert not any(alive(pid) for pid in first.values())
    assert not port_open("127.0.0.1", PORTS["kafka"])
    assert not port_open("127.0.0.1", PORTS["postgres"])
    assert _processes_under(state) == []
    stopped = _cli(second_stack, "stack", "status", check=False)
    assert stopped.returncode == 1 and stopped.stdout.count("stopped") == 2
    _cli(second_stack, "stack", "down")  # idempotent too


def test_port_in_use_is_a_clear_error(stack: Settings, tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        broker = KafkaBroker(
            KafkaSettings(bootstrap_servers=f"127.0.0.1:{port}", controller_port=port + 1),
            StackSettings(state_dir=tmp_path, cache_dir=stack.stack.cache_dir),
        )
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port} is already in use"):
            broker.start(lambda _line: None)
