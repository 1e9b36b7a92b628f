"""Environment that keeps ROS 2 traffic of a test or benchmark run on this machine, in its own DDS
domain, with logs in a scratch folder and a Fast DDS shared-memory segment large enough for images.

Pure: no ROS import, so it can be applied before rclpy starts (DDS reads these at participant creation).
"""
from __future__ import annotations

import importlib.metadata
import os
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
# lttng-ust keeps one wait file per user for its whole life; everything else a run puts in /dev/shm
# (Fast DDS segments, port locks, semaphores) must be gone after a clean exit.
PERSISTENT_SHM_PREFIXES = ("lttng-ust-wait",)


def isolated_ros_environment(directory: Path) -> dict[str, str]:
    """Variables for a run whose scratch files go to ``directory``; the domain id follows the pid,
    so concurrent runs on one machine do not see each other."""
    directory.mkdir(parents=True, exist_ok=True)
    profile = directory / "fastdds.xml"
    profile.write_text(FAST_DDS_PROFILE)
    (directory / "ros_log").mkdir(exist_ok=True)
    return {
        "ROS_DOMAIN_ID": str(1 + os.getpid() % 100),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOG_DIR": str(directory / "ros_log"),
        profiles_variable(): str(profile),
        "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp",
    }


def profiles_variable() -> str:
    """The variable this Fast DDS reads its XML profiles from: FASTDDS_DEFAULT_PROFILES_FILE from Fast DDS 3
    (Kilted on), which still reads the old name but warns at every participant while it is set, even beside
    the new one; FASTRTPS_DEFAULT_PROFILES_FILE before (Jazzy's Fast DDS 2.14 knows only that one). The
    version comes from the installed wheels (ros-fastdds is Fast DDS 3), else from ROS_DISTRO."""
    try:
        fast_dds_3 = int(importlib.metadata.version("ros-fastdds").split(".")[0]) >= 3
    except importlib.metadata.PackageNotFoundError:
        fast_dds_3 = os.environ.get("ROS_DISTRO", "jazzy") not in ("humble", "iron", "jazzy")
    return "FASTDDS_DEFAULT_PROFILES_FILE" if fast_dds_3 else "FASTRTPS_DEFAULT_PROFILES_FILE"


def shm_files() -> set[str]:
    """Files in /dev/shm that a run may leave behind (all but lttng's per-user ones)."""
    return {name for name in os.listdir("/dev/shm") if not name.startswith(PERSISTENT_SHM_PREFIXES)}
