"""Health figures on ``/diagnostics`` (``diagnostic_msgs/DiagnosticArray``) when diagnostic_msgs is
installed; without it the node reports on its logger only and says so once at start."""
from __future__ import annotations

import math

from std_msgs.msg import Header

try:
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
except ImportError:  # an optional dependency: the log line carries the same figures
    DiagnosticArray = None

STATUS_NAME = "grounding_dino: inference"


class DiagnosticsPublisher:
    def __init__(self, node) -> None:
        self._node = node
        if DiagnosticArray is None:
            node.get_logger().info("diagnostic_msgs is not installed: health goes to the log only")
            self._publisher = None
        else:
            self._publisher = node.create_publisher(DiagnosticArray, "/diagnostics", 10)

    def publish(self, figures: dict[str, float]) -> None:
        if self._publisher is None:
            return
        level, message = DiagnosticStatus.OK, "running"
        if figures["failed_batches"]:
            level = DiagnosticStatus.WARN
            message = f"{figures['failed_batches']} batches failed, {figures['lost_frames']} frames lost (see the log)"
        elif figures["processed"] == 0:
            level, message = DiagnosticStatus.WARN, "no frame processed yet"
        status = DiagnosticStatus(
            level=level,
            name=STATUS_NAME,
            message=message,
            hardware_id=self._node.get_fully_qualified_name(),
            values=[KeyValue(key=key, value=_format(value)) for key, value in figures.items()],
        )
        header = Header(stamp=self._node.get_clock().now().to_msg())
        self._publisher.publish(DiagnosticArray(header=header, status=[status]))


def _format(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return "nan" if math.isnan(value) else f"{value:.6g}"

