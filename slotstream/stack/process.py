"""Small process helpers of the local stack: pid files, ports, waiting, stopping."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from slotstream.errors import BuildError, MissingToolError, PortInUseError, SlotstreamError

__all__ = [
    "alive",
    "port_open",
    "read_pid",
    "require_tool",
    "run_logged",
    "stop_pid",
    "tail",
    "wait_until",
]


def require_tool(name: str, hint: str) -> str:
    """Absolute path of program ``name``; raises :class:`MissingToolError` with ``hint``."""
    path = shutil.which(name)
    if path is None:
        raise MissingToolError(f"`{name}` is not installed or not on PATH. {hint}")
    return path


def read_pid(pid_file: Path) -> int | None:
    """The pid in ``pid_file`` if that process is alive, else None."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    """True while process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_port_free(host: str, port: int, service: str) -> None:
    """Raise :class:`PortInUseError` if ``host:port`` is already taken."""
    if port_open(host, port):
        raise PortInUseError(
            f"{service} cannot start: {host}:{port} is already in use by another process "
            f"(`ss -ltnp 'sport = :{port}'` shows which). Stop it, or choose another port "
            f"in the SLOTSTREAM_* settings."
        )


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.25) -> bool:
    """Call ``check`` until it returns True or ``timeout`` seconds pass.

    Any exception from ``check`` means "not yet", except a :class:`SlotstreamError`,
    which a probe raises to say waiting longer is pointless (the process died).
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return True
        except SlotstreamError:
            raise
        except Exception:  # noqa: BLE001, S110 - a failing probe just means "not yet"
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop_pid(pid: int, timeout: float = 30.0) -> None:
    """SIGTERM the process group of ``pid``, SIGKILL it after ``timeout`` seconds."""
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    own = pgid == os.getpgid(0)
    _signal(pid, pgid, signal.SIGTERM, own)
    if wait_until(lambda: not alive(pid), timeout):
        return
    _signal(pid, pgid, signal.SIGKILL, own)
    wait_until(lambda: not alive(pid), 10.0)


def stop_pid_file(pid_file: Path, timeout: float = 30.0) -> None:
    """Stop the process named in ``pid_file`` (see :func:`stop_pid`) and remove the file."""
    pid = read_pid(pid_file)
    if pid is not None:
        stop_pid(pid, timeout=timeout)
    pid_file.unlink(missing_ok=True)


def wait_started(ready: Callable[[], bool], timeout: float, pid_file: Path) -> bool:
    """:func:`wait_until` ``ready`` of a process just started; when ``ready`` raises
    :class:`BuildError` (the process died) the pid file is removed before re-raising."""
    try:
        return wait_until(ready, timeout, interval=0.5)
    except BuildError:
        pid_file.unlink(missing_ok=True)
        raise


def _signal(pid: int, pgid: int, sig: int, own_group: bool) -> None:
    try:
        if own_group:  # never signal our own process group
            os.kill(pid, sig)
        else:
            os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def tail(path: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_logged(cmd: Sequence[str | os.PathLike[str]], log: Path, what: str, **kw: object) -> None:
    """Run ``cmd`` to completion, appending its output to ``log``.

    Raises :class:`BuildError` naming ``what`` and the log file on a non-zero exit.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(map(str, cmd))}\n".encode())
        out.flush()
        result = subprocess.run(
            [str(c) for c in cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
            **kw,  # type: ignore[call-overload]
        )
    if result.returncode != 0:
        raise BuildError(f"{what} failed (exit {result.returncode}); see {log}\n--- last lines ---\n{tail(log)}")
