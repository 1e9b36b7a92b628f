"""Real rclpy and Fast DDS on loopback for the ROS tests: an isolated environment, node processes that
must exit cleanly, and a listener node spinning in the test process."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

# Fast DDS with a 16 MB shared-memory segment: the default 512 KB is smaller than one VGA frame, and
# best-effort image traffic then loses frames. UDP stays for discovery.
FAST_DDS_PROFILE = """<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles">
  <transport_descriptors>
    <transport_descriptor><transport_id>shm_large</transport_id><type>SHM</type>
      <segment_size>16777216</segment_size></transport_descriptor>
    <transport_descriptor><transport_id>udp</transport_id><type>UDPv4</type></transport_descriptor>
  </transport_descriptors>
  <participant profile_name="default_participant" is_default_profile="true">
    <rtps><userTransports><transport_id>shm_large</transport_id><transport_id>udp</transport_id></userTransports>
      <useBuiltinTransports>false</useBuiltinTransports></rtps>
  </participant>
</profiles>
"""
# lttng-ust keeps one wait file per user for its whole life; everything else in /dev/shm from a run
# (Fast DDS segments, port locks, semaphores) must be gone after a clean exit.
PERSISTENT_SHM_PREFIXES = ("lttng-ust-wait",)


def isolated_ros_environment(directory: Path) -> dict[str, str]:
    """Variables that keep a test run's DDS traffic on loopback, in its own domain, logging in tmp."""
    profile = directory / "fastdds.xml"
    profile.write_text(FAST_DDS_PROFILE)
    (directory / "ros_log").mkdir(exist_ok=True)
    return {
        "ROS_DOMAIN_ID": str(1 + os.getpid() % 100),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOG_DIR": str(directory / "ros_log"),
        "FASTRTPS_DEFAULT_PROFILES_FILE": str(profile),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
    }


def shm_files() -> set[str]:
    return {name for name in os.listdir("/dev/shm") if not name.startswith(PERSISTENT_SHM_PREFIXES)}


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


class Listener:
    """A node in the test process, spun on a background thread until ``close``."""

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.node = rclpy.create_node(name)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self._executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        # Join the spin thread before destroying the node, or rclpy aborts and leaves /dev/shm files.
        self._stop.set()
        self._thread.join()
        self._executor.remove_node(self.node)
        self._executor.shutdown()
        self.node.destroy_node()


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
