"""Plumbing of the video pipeline's threads: stages that hand their errors over, stop-aware bounded
queue operations, and signals turned into a stop request at a frame boundary."""
from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable, Iterable

END = object()  # end-of-stream marker passed through the queues
POLL_SECONDS = 0.1  # how often a blocked queue operation checks for a stop request


class Stage(threading.Thread):
    """A pipeline thread that records its exception and stops the others instead of dying silently."""

    def __init__(self, name: str, work: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=f"video-{name}", daemon=True)
        self._work, self._stop_request = work, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as error:  # handed to the caller's thread, which re-raises it
            self.error = error
            self._stop_request.set()


def put(target: queue.Queue, item, stop: threading.Event) -> bool:
    """Put, waiting for room unless a stop is requested; False when stopped."""
    while not stop.is_set():
        try:
            target.put(item, timeout=POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False


def get(source: queue.Queue, stop: threading.Event, stages: Iterable[Stage]):
    """Get; once the queue is empty, re-raise a failed stage's error, or return END when stopped.

    Items already queued come first, so the work finished before a stage failed still gets written.
    """
    while True:
        try:
            return source.get(timeout=POLL_SECONDS)
        except queue.Empty:
            pass
        for stage in stages:
            if stage.error is not None:
                raise stage.error
        if stop.is_set():
            return END


class StopSignals:
    """Within ``with``, SIGINT (Ctrl-C) and SIGTERM are remembered in ``received`` and act on ``stop``.

    With a ``stop`` event the first signal only sets it, so the work ends at its next frame boundary (never
    inside an encoder call, which keeps the video and the records equal); a second signal raises
    KeyboardInterrupt at once. Without one, every signal raises KeyboardInterrupt at once (a command's
    start-up, where nothing is written yet).

    A signal an enclosing ``StopSignals`` already took counts as received here too: a KeyboardInterrupt
    raised inside an import can come out as an ImportError ("initialization failed") that a library
    catches, and the command would then go on as if Ctrl-C had never been pressed. Only the main thread
    can take signals: elsewhere the caller's own handling stays as it is.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop, self.received = stop, ""
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        first = not self.received
        self.received = self.received or signal.Signals(signum).name
        if first and self.stop is not None:
            self.stop.set()
            return
        raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
            outer = [getattr(handler, "__self__", None) for handler in self._previous.values()]
            earlier = next((item.received for item in outer if isinstance(item, StopSignals) and item.received), "")
            if earlier:
                self.received = earlier
                if self.stop is not None:
                    self.stop.set()
        return self

    def __exit__(self, *exc_info) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
