"""The supervisor: a process that exits unasked comes back on the same port, with backoff."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
from agora_deploy import supervise, supervisor_state
from agora_deploy.infra import Infra
from agora_deploy.launchers.process import ManagedProcess, free_port, pid_alive, port_is_open
from agora_deploy.stack import ComponentInfo, read_stack
from agora_deploy.supervise import Supervisor
from agora_deploy.supervisor_state import request_restart
from agora_deploy.testing import run_agora as _agora


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _server(tmp_path: Path, name: str = "web") -> tuple[Infra, ManagedProcess, int]:
    port = free_port()
    process = ManagedProcess(
        name,
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        tmp_path / "logs" / f"{name}.log",
        cwd=tmp_path,
        die_with_parent=True,
        ports=(port,),
    )
    process.health = lambda: port_is_open("127.0.0.1", port)
    process.start()
    process.wait_healthy(timeout=20)
    infra = Infra(tmp_path / "state", die_with_parent=True)
    info = ComponentInfo(name, f"http://127.0.0.1:{port}", process.pid, "running")
    infra.add_process(info, process)
    return infra, process, port


def _tick_until(sup: Supervisor, predicate: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sup.tick()
        if callable(predicate) and predicate():
            return
        time.sleep(0.05)
    raise AssertionError("supervisor did not reach the expected state in time")


def test_a_killed_process_comes_back_on_its_port(tmp_path: Path) -> None:
    infra, process, port = _server(tmp_path)
    try:
        sup = Supervisor(infra)
        first = process.pid
        assert first is not None
        os.kill(first, signal.SIGKILL)
        unit = sup.units["web"]
        _tick_until(sup, lambda: unit.state == "running" and process.pid != first)
        assert port_is_open("127.0.0.1", port)
        assert unit.restarts == 1
        assert unit.last_exit == "SIGKILL"
        entry = {c.name: c for c in read_stack(infra.state_dir)}["web"]
        assert entry.pid == process.pid
        assert entry.extra["restarts"] == 1
        assert entry.extra["last_exit"] == "SIGKILL"
    finally:
        infra.stop()


def test_restart_on_request_is_not_a_crash(tmp_path: Path) -> None:
    infra, process, _port = _server(tmp_path)
    try:
        sup = Supervisor(infra)
        first = process.pid
        request_restart(infra.state_dir, "web")
        unit = sup.units["web"]
        _tick_until(sup, lambda: unit.state == "running" and process.pid != first)
        assert unit.restarts == 0
        assert unit.last_exit == "restart requested"
        assert first is not None
        assert not pid_alive(first)
    finally:
        infra.stop()


def test_a_crash_loop_backs_off_exponentially(tmp_path: Path) -> None:
    clock = FakeClock()
    process = ManagedProcess(
        "crashy",
        [sys.executable, "-c", "import sys; sys.exit(3)"],
        tmp_path / "crashy.log",
        die_with_parent=True,
    )
    process.health = lambda: False
    process.start()
    assert process.proc is not None
    process.proc.wait(timeout=10)
    infra = Infra(tmp_path / "state", die_with_parent=True)
    infra.add_process(ComponentInfo("crashy", "-", process.pid, "running"), process)
    try:
        sup = Supervisor(infra, clock=clock)
        unit = sup.units["crashy"]
        delays = []
        for _ in range(5):
            sup.tick()  # sees the exit, schedules the restart
            assert unit.state == "restarting"
            assert unit.last_exit == "exit 3"
            delays.append(unit.next_start_at - clock.now)
            clock.now = unit.next_start_at
            sup.tick()  # starts it again
            assert unit.state == "starting"
            assert process.proc is not None
            process.proc.wait(timeout=10)
        assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
        assert unit.restarts == 5
    finally:
        infra.stop()


def test_a_wedged_process_is_restarted_after_its_liveness_fails(tmp_path: Path) -> None:
    clock = FakeClock()
    infra, process, _port = _server(tmp_path)
    wedged = {"now": False}
    process.liveness = lambda: not wedged["now"]
    try:
        sup = Supervisor(infra, clock=clock)
        unit = sup.units["web"]
        first = process.pid
        for _ in range(supervise.LIVENESS_FAILURES + 2):
            clock.now += supervise.LIVENESS_EVERY_S
            sup.tick()
        assert unit.restarts == 0, "a live process is left alone"
        wedged["now"] = True
        for _ in range(supervise.LIVENESS_FAILURES):
            assert unit.state == "running"
            clock.now += supervise.LIVENESS_EVERY_S
            sup.tick()
        assert unit.state == "restarting"
        assert unit.last_exit == "liveness"
        assert first is not None
        deadline = time.monotonic() + 10
        while pid_alive(first) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_alive(first)
    finally:
        infra.stop()


@pytest.mark.parametrize("victims", [("postgres", "redis", "kafka", "mail")])
def test_detached_stack_heals_itself(tmp_path: Path, victims: tuple[str, ...]) -> None:
    """`agora up --detach`: every killed component is back, and `down` leaves nothing."""
    home = tmp_path / "agora"
    started = _agora(home, "up", "--detach", "--services", "none")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        before = {c.name: c for c in read_stack(home)}
        for name in victims:
            pid = before[name].pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            now = {c.name: c for c in read_stack(home)}
            if all(now[n].state == "running" and now[n].pid != before[n].pid for n in victims):
                break
            time.sleep(0.5)
        now = {c.name: c for c in read_stack(home)}
        for name in victims:
            assert now[name].state == "running", (name, now[name])
            assert now[name].extra["restarts"] == 1
            assert now[name].extra["last_exit"] == "SIGKILL"
        restarted = _agora(home, "restart", "redis")
        assert restarted.returncode == 0, restarted.stderr
        assert "redis restarted" in restarted.stdout
        supervisor_pid = supervisor_state.read_supervisor_state(home)
        assert supervisor_pid is not None
    finally:
        stopped = _agora(home, "down")
    assert stopped.returncode == 0, stopped.stderr
    pids = [c.pid for c in read_stack(home) if c.pid is not None]
    assert not any(pid_alive(p) for p in [*pids, supervisor_pid.pid])
