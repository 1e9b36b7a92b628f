"""Node processes for the ROS tests, which must exit cleanly (the isolated environment is
nodes.loopback, the in-process node nodes.spinning.BackgroundNode)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class NodeProcess:
    """``python -m <module> --ros-args ...`` with its output collected in a file."""

    def __init__(self, module: str, ros_args: list[str], log_path: Path) -> None:
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, "--ros-args", *ros_args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )

    def output(self) -> str:
        return self.log_path.read_text()

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30.0) -> int:
        if self.running():
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log.close()


def wait_for(condition: Callable[[], bool], timeout: float, what: str, process: NodeProcess | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and not process.running():
            raise AssertionError(f"node exited while waiting for {what}:\n{process.output()[-3000:]}")
        time.sleep(0.02)
    detail = f"\nnode output:\n{process.output()[-3000:]}" if process is not None else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")


@contextmanager
def ros_session(tmp_path: Path) -> Iterator[None]:
    """rclpy on an isolated graph (own domain id, loopback only, logs under tmp_path) for the block;
    afterwards the environment is restored and no Fast DDS shared-memory file may be left behind."""
    import rclpy

    from nodes.loopback import isolated_ros_environment, shm_files

    saved = dict(os.environ)
    os.environ.update(isolated_ros_environment(tmp_path))
    shm_before = shm_files()
    rclpy.init()
    try:
        yield
    finally:
        rclpy.shutdown()
        os.environ.clear()
        os.environ.update(saved)
    assert not (shm_files() - shm_before), f"leftover shared memory after a clean exit: {sorted(shm_files() - shm_before)}"
