"""Managed child processes: own process group, log file, health wait, clean stop."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


class LaunchError(RuntimeError):
    """A component could not be started; the message says why and shows the log tail."""


def _die_with_parent() -> None:
    """Ask the kernel to SIGKILL this child when the process that started it dies (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """Return whether something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def ensure_port_free(name: str, host: str, port: int) -> None:
    """Raise a clear error when ``port`` is already taken."""
    if port_is_open(host, port):
        raise LaunchError(f"{name}: port {host}:{port} is already in use by another process")


def log_tail(path: Path, lines: int = 25) -> str:
    """Return the last lines of a log file (empty when missing)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class ManagedProcess:
    """One child process in its own process group, logging to ``log_path``."""

    name: str
    argv: Sequence[str]
    log_path: Path
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    user: str | None = None
    die_with_parent: bool = False
    stop_signal: signal.Signals = signal.SIGTERM
    #: How a supervisor tells that a (re)started process is ready; set by its launcher.
    health: Callable[[], bool] | None = None
    #: Ports the process listens on: a restart waits until the dead one released them.
    ports: tuple[int, ...] = ()
    #: A supervisor's periodic probe of a running process (False: wedged, restart it).
    liveness: Callable[[], bool] | None = None
    #: Runs before every start (a restart too): e.g. remove a killed run's stale sockets.
    pre_start: Callable[[], None] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pid(self) -> int | None:
        """The child's pid, or None before start."""
        return self.proc.pid if self.proc is not None else None

    def start(self) -> None:
        """Spawn the process (it gets its own session and process group)."""
        if not Path(self.argv[0]).exists():
            raise LaunchError(f"{self.name}: binary not found: {self.argv[0]}")
        if self.pre_start is not None:
            self.pre_start()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - argv is built by the launchers
                list(self.argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=dict(self.env) if self.env is not None else None,
                cwd=self.cwd,
                user=self.user,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        except OSError as exc:
            raise LaunchError(f"{self.name}: could not start {self.argv[0]}: {exc}") from exc
        finally:
            log.close()

    def alive(self) -> bool:
        """Return whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def exit_description(self) -> str:
        """How the process ended (``exit 1``, ``SIGKILL``), or ``running``."""
        code = self.proc.poll() if self.proc is not None else None
        if code is None:
            return "running"
        if code < 0:
            try:
                return signal.Signals(-code).name
            except ValueError:
                return f"signal {-code}"
        return f"exit {code}"

    def kill_group(self) -> None:
        """SIGKILL what is left of the process group (workers that outlived their leader)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def wait_healthy(self, check: Callable[[], bool] | None = None, timeout: float = 30) -> None:
        """Poll ``check`` (default: ``health``) until it passes; fail if it exits or times out."""
        check = check or self.health
        if check is None:
            raise LaunchError(f"{self.name}: no health check to wait for")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                code = self.proc.returncode if self.proc is not None else None
                raise LaunchError(
                    f"{self.name} exited during start (code {code}); log {self.log_path}:\n"
                    f"{log_tail(self.log_path)}"
                )
            if check():
                return
            time.sleep(0.1)
        self.stop()
        raise LaunchError(
            f"{self.name} did not become healthy within {timeout:.0f}s; log {self.log_path}:\n"
            f"{log_tail(self.log_path)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        stop_pid(self.proc.pid, timeout=timeout, popen=self.proc, first=self.stop_signal)


def pid_alive(pid: int) -> bool:
    """Return whether ``pid`` names a live (non-zombie) process."""
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
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def stop_pid(
    pid: int,
    *,
    timeout: float = 10.0,
    popen: subprocess.Popen[bytes] | None = None,
    first: signal.Signals = signal.SIGTERM,
) -> None:
    """Stop the process group led by ``pid`` (``first``, then SIGKILL), reaping our own child."""
    for sig in (first, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + (timeout if sig is first else 5.0)
        while time.monotonic() < deadline:
            gone = popen.poll() is not None if popen is not None else not pid_alive(pid)
            if gone:
                # Stragglers of the group (children that outlived the leader) go too.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
                return
            time.sleep(0.05)
