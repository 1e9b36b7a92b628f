"""Start and stop a node whose own threads publish, without racing the shutdown.

rclpy's default signal handler invalidates the context the moment SIGINT/SIGTERM arrives, while a
worker thread may still be publishing (an RCLError, or an abort that leaves Fast DDS files in
/dev/shm). So the handlers here only ask the spin loop to stop; the node's threads are joined
(``node.close()``) before the node is destroyed and the context shut down.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

_SPIN_PERIOD = 0.1  # seconds between checks of the stop request


def run(create: Callable[[], object], name: str, args: list[str] | None = None) -> int:
    """A node's ``main``: init rclpy, build the node with ``create()``, spin until stopped (until
    ``node.finished`` is set, when the node has that event). A ValueError or FileNotFoundError from
    ``create`` (bad parameters) is logged as fatal: exit code 2."""
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = create()
    except (ValueError, FileNotFoundError) as error:
        rclpy.logging.get_logger(name).fatal(str(error))
        rclpy.try_shutdown()
        return 2
    spin_until_stopped(node, getattr(node, "finished", None))
    return 0


def spin_until_stopped(node, finished: threading.Event | None = None) -> None:
    """Spin ``node`` until SIGINT/SIGTERM (or ``finished`` is set), then ``node.close()``, destroy
    it and shut rclpy down. ``node.close()`` must stop and join the node's own threads."""
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    # One executor for the whole run (rclpy.spin_once would rebuild its wait set on every call).
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and not (finished is not None and finished.is_set()) and rclpy.ok():
            executor.spin_once(timeout_sec=_SPIN_PERIOD)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        executor.remove_node(node)
        executor.shutdown()
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()


class BackgroundNode:
    """A node spun on its own thread (for drivers and tests that block the main thread); ``close``
    joins the thread before destroying the node, or rclpy aborts and leaves files in /dev/shm.
    ``node``: spin this node (``close`` then calls its ``close`` too, when it has one) instead of a new
    plain node called ``name``."""

    def __init__(self, name: str, node=None) -> None:
        self.node = node if node is not None else rclpy.create_node(name)
        self._executor = SingleThreadedExecutor()
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"spin {name}", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self._executor.spin_once(timeout_sec=_SPIN_PERIOD / 2)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._executor.remove_node(self.node)
        self._executor.shutdown()
        if hasattr(self.node, "close"):
            self.node.close()
        self.node.destroy_node()
