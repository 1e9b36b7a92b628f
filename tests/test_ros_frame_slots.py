"""The node's hand-over from callbacks to the inference thread, and its health arithmetic."""
from __future__ import annotations

import threading
import time

import pytest

from nodes.frame_slots import FrameSlots, PendingFrame
from nodes.health import BatchRecord, Health


def test_newest_frame_per_camera_wins_and_drops_are_counted():
    slots = FrameSlots()
    assert slots.put("a", "a1") is False
    assert slots.put("a", "a2") is True
    assert slots.put("b", "b1") is False
    taken = slots.take_all(timeout=0)
    assert [(f.camera, f.msg) for f in taken] == [("a", "a2"), ("b", "b1")]
    assert (slots.received, slots.dropped, slots.largest_backlog) == (3, 1, 2)
    assert slots.take_all(timeout=0) == []


def test_take_all_blocks_until_a_frame_a_wake_or_close():
    slots = FrameSlots()
    results = []
    worker = threading.Thread(target=lambda: results.append(slots.take_all(timeout=10)))
    worker.start()
    time.sleep(0.05)
    assert worker.is_alive()
    slots.put("a", 1)
    worker.join(timeout=5)
    assert [f.msg for f in results[0]] == [1]

    start = time.monotonic()
    threading.Timer(0.05, slots.wake).start()
    assert slots.take_all(timeout=10) == [] and time.monotonic() - start < 5
    slots.close()
    assert slots.closed and slots.take_all(timeout=10) == []


def test_health_overhead_is_non_model_time_over_model_time():
    health = Health()
    health.record_batch(BatchRecord(2, busy_seconds=1.1, model_seconds=1.0, end_to_end_seconds=(0.5, 0.7)))
    health.record_batch(BatchRecord(1, busy_seconds=2.2, model_seconds=2.0, end_to_end_seconds=()))
    assert health.record_malformed("wrong_step") is True
    assert health.record_malformed("wrong_step") is False
    figures = health.snapshot(received=5, dropped=2, largest_backlog=2)
    assert figures["overhead"] == pytest.approx(0.1)
    assert (figures["processed"], figures["batches"], figures["largest_batch"], figures["malformed"]) == (3, 2, 2, 2)
    assert figures["end_to_end_ms_p50"] == pytest.approx(600.0)
    assert figures["model_ms_p50"] == pytest.approx(1500.0)


def test_close_counts_waiting_frames_as_dropped_and_reopen_accepts_a_worker_again():
    slots = FrameSlots()
    slots.put("a", 1)
    slots.put("b", 2)
    slots.close()  # the node deactivates with two frames waiting
    assert slots.take_all(timeout=10) == [] and (slots.received, slots.dropped) == (2, 2)
    slots.reopen()
    assert not slots.closed
    slots.put("a", 3)
    assert [f.msg for f in slots.take_all(timeout=10)] == [3] and (slots.received, slots.dropped) == (3, 2)


def test_each_frame_knows_its_index_among_its_cameras_frames_dropped_ones_counted():
    """The camera's rate is its frames over their time, and the detector takes only some of them
    (perception.tracking.pace.StepRateCheck): the frames replaced while the detector was busy count."""
    slots = FrameSlots()
    for msg in ("a0", "a1", "a2"):
        slots.put("a", msg)
    slots.put("b", "b0")
    assert [(f.camera, f.index) for f in slots.take_all(timeout=0)] == [("a", 2), ("b", 0)]
    slots.put("a", "a3")
    assert [f.index for f in slots.take_all(timeout=0)] == [3]


def test_a_frame_is_timed_by_its_stamp_or_without_one_by_its_arrival():
    """The camera's tracker steps through the time between two frames the detector takes; a frame without a stamp
    was timed one frame at the tracker's frame_rate after the last, so a slow detector on an unstamped camera
    looked like 10 fps (tracks outlived hit_counter_max detector runs)."""
    from sensor_msgs.msg import Image

    stamped = Image()
    stamped.header.stamp.sec, stamped.header.stamp.nanosec = 1_700_000_000, 250_000_000
    assert PendingFrame("/cam", stamped, received=12.5).time == pytest.approx(1_700_000_000.25)
    assert PendingFrame("/cam", Image(), received=12.5).time == 12.5
