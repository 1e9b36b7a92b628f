"""The detector node in its own process, driven over real DDS on loopback from this process.

The model is ``random:tiny`` (random weights): these tests check plumbing (stamps, ids, labels from
the current prompt, batching, prompt handling, malformed input, shutdown), not what is detected.
"""
from __future__ import annotations

import pytest

pytest.importorskip("rclpy", reason="ROS 2 is installed by scripts/install_ros.sh")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs is built by scripts/install_ros.sh")
from detector_node_harness import LATCHED, TINY_NODE_PARAMETERS, frame, image_msg, running_node  # noqa: E402
from ros_harness import wait_for  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402
from vision_msgs.msg import LabelInfo  # noqa: E402

from perception.camera_messages import fill_image_msg  # noqa: E402

CAMERAS = ("/cam_a/image_raw", "/cam_b/image_raw", "/cam_c/image_raw/compressed")
FIRST_PROMPT = "a person . a red mug ."
HEIGHT, WIDTH = frame(0).shape[:2]
NODE_PARAMETERS = {
    **TINY_NODE_PARAMETERS,
    # Camera-motion compensation on (nested parameters, each camera's frames to its tracker); the test
    # cameras do not move, so it must change no id.
    "tracking.motion.enabled": "true",
    "tracking.motion.model": "translation",
}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    with running_node(tmp_path_factory.mktemp("ros"), CAMERAS, FIRST_PROMPT, NODE_PARAMETERS) as harness:
        harness.startup_phrases = [c.class_name for c in harness.phrases[-1].class_map]
        yield harness


def test_a_late_joining_node_receives_the_prompt(harness):
    assert harness.startup_phrases == ["a person", "a red mug"]


def test_each_camera_namespace_has_the_phrases_as_latched_label_info(harness):
    received = {}
    for camera, namespace in (("/cam_a/image_raw", "/cam_a"), ("/cam_c/image_raw/compressed", "/cam_c")):
        # Subscribed long after the node published: transient local must still deliver it.
        harness.listener.node.create_subscription(LabelInfo, f"{namespace}/label_info",
                                                  lambda msg, camera=camera: received.setdefault(camera, msg), LATCHED)
    wait_for(lambda: len(received) == 2, 20, "label_info of both cameras", harness.node_process)
    for msg in received.values():
        assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, "a person"), (1, "a red mug")]
        assert msg.threshold == pytest.approx(0.0)  # the box threshold of TINY_NODE_PARAMETERS


def test_detections_keep_the_image_header_and_carry_phrases_pixel_boxes_and_track_ids(harness):
    replies = [harness.exchange("/cam_a/image_raw", seed=1) for _ in range(3)]
    for reply in replies:
        assert reply.header.frame_id == "/cam_a/image_raw"
        assert len(reply.detections) == 4
        for detection in reply.detections:
            assert detection.header == reply.header
            assert detection.results[0].hypothesis.class_id in ("a person", "a red mug")
            assert 0.0 <= detection.results[0].hypothesis.score <= 1.0
            box = detection.bbox
            # Inside the image up to float rounding: boxes clipped to the border have an edge at exactly 0.
            assert -1e-3 <= box.center.position.x - box.size_x / 2 and box.center.position.x + box.size_x / 2 <= WIDTH + 1e-3
            assert -1e-3 <= box.center.position.y - box.size_y / 2 and box.center.position.y + box.size_y / 2 <= HEIGHT + 1e-3
    # The same image three times: the tracker keeps every object's id.
    ids = [sorted(d.id for d in reply.detections) for reply in replies]
    assert all(ids) and ids[0] == ids[1] == ids[2] and all(i.isdigit() for i in ids[0])


def test_compressed_camera_is_decoded(harness):
    reply = harness.exchange("/cam_c/image_raw/compressed", seed=2)
    assert len(reply.detections) == 4 and reply.header.frame_id == "/cam_c/image_raw/compressed"


def test_frames_of_two_cameras_that_wait_together_go_through_the_model_as_one_batch(harness):
    # Two frames wait together only when both arrive while the model is busy with an earlier one. A burst of
    # frames of two cameras published in a tight loop does that, unless this process is slowed down: with both
    # cores loaded by other work the frames once reached the node one at a time (largest_batch 1). So up to
    # five bursts go out; a node that never batches fails all five.
    for _ in range(5):
        replies = len(harness.replies["/cam_b/image_raw"])
        for round_index in range(6):
            harness.publish("/cam_a/image_raw", seed=10 + round_index)
            harness.publish("/cam_b/image_raw", seed=20 + round_index)
        wait_for(lambda: len(harness.replies["/cam_b/image_raw"]) > replies, 30, "detections of camera b",
                 harness.node_process)
        health = harness.latest_health()
        if int(health["largest_batch"]) == 2:
            break
    assert int(health["largest_batch"]) == 2
    # Every frame the node received is answered, dropped (replaced by a newer one of its camera while it waited) or
    # counted as refused or lost; the last ones may still be in the model when the first reply of the last burst
    # arrives. (Images go out best effort, as cameras send them: one of a burst may never arrive.)
    def accounted(health: dict[str, str]) -> bool:
        kinds = ("processed", "dropped", "malformed", "refused", "skipped_without_prompt", "lost_frames")
        return sum(int(health[kind]) for kind in kinds) == int(health["received"])

    wait_for(lambda: accounted(harness.diagnostics[-1]), 30, "every frame received accounted for", harness.node_process)


def test_prompt_topic_changes_labels_and_text_is_encoded_once_per_prompt(harness):
    before = int(harness.latest_health()["text_encoder_calls"])
    harness.prompt_publisher.publish(String(data="a cat ."))
    wait_for(lambda: harness.phrases[-1].class_map[0].class_name == "a cat", 20, "the new phrases", harness.node_process)
    reply = harness.exchange("/cam_a/image_raw", seed=3)
    assert {d.results[0].hypothesis.class_id for d in reply.detections} == {"a cat"}
    after_change = int(harness.latest_health()["text_encoder_calls"])
    assert after_change == before + 1
    # The same prompt again, and a frame through: no new text encoding.
    harness.prompt_publisher.publish(String(data="a cat ."))
    harness.exchange("/cam_a/image_raw", seed=4)
    assert int(harness.latest_health()["text_encoder_calls"]) == after_change


def test_runtime_parameters_change_thresholds_and_reject_bad_values(harness):
    assert harness.set_parameter("box_threshold", 1.0) == (True, "")
    assert len(harness.exchange("/cam_a/image_raw", seed=5).detections) == 0
    assert harness.set_parameter("box_threshold", 0.0)[0]
    assert len(harness.exchange("/cam_a/image_raw", seed=5).detections) == 4
    ok, reason = harness.set_parameter("prompt", " . ")
    assert not ok and "names nothing" in reason
    ok, reason = harness.set_parameter("box_threshold", 1.5)
    assert not ok
    ok, _ = harness.set_parameter("model", "elsewhere")
    assert not ok  # start-time parameters are read-only


def test_malformed_messages_are_logged_once_per_kind_and_skipped(harness):
    good = Image()
    fill_image_msg(good, frame(6))
    cases = {
        "wrong_step": dict(step=10),
        "unknown_encoding": dict(encoding="64FC1"),
        "data_size": dict(data=bytes(100)),
        "zero_size": dict(width=0, height=0, step=0, data=b""),
    }
    for _ in range(2):
        for change in cases.values():
            bad = Image(height=good.height, width=good.width, encoding=good.encoding, step=good.step, data=good.data)
            for field, value in change.items():
                setattr(bad, field, value)
            harness.image_publishers["/cam_a/image_raw"].publish(bad)
            harness.exchange("/cam_b/image_raw", seed=7)  # paces the bad frames so none is dropped
        harness.image_publishers["/cam_c/image_raw/compressed"].publish(CompressedImage(format="jpeg", data=b"\xff\xd8junk"))
        harness.exchange("/cam_b/image_raw", seed=7)
    # Still serving every camera.
    assert len(harness.exchange("/cam_a/image_raw", seed=8).detections) == 4
    assert int(harness.latest_health()["malformed"]) == 10
    output = harness.node_process.output()
    for kind in [*cases, "corrupt_compressed"]:
        assert output.count(f"({kind})") == 1, kind


def test_the_loopback_profile_reaches_fast_dds_without_a_deprecation_warning(tmp_path):
    """Fast DDS 3 (Kilted) warns at every participant while the old FASTRTPS_ variable is set, even beside the
    new one; nodes.loopback sets the one variable this Fast DDS reads. A participant in a process of its own
    (this module's harness already holds rclpy's context here)."""
    import os
    import subprocess
    import sys

    from nodes.loopback import isolated_ros_environment

    probe = "import rclpy; rclpy.init(); rclpy.create_node('profile_probe').destroy_node(); rclpy.shutdown()"
    result = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **isolated_ros_environment(tmp_path)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    logs = "".join(path.read_text(errors="replace") for path in (tmp_path / "ros_log").glob("*.log"))
    assert "DEFAULT_PROFILES_FILE" not in result.stderr + logs, (result.stderr + logs)[-2000:]


def test_a_camera_faster_than_its_trackers_steps_gets_its_tracker_stepped_at_its_rate(harness):
    """At the detector's pace a camera's tracker steps between runs at tracking.frame_rate (10) and rounds each gap
    to whole steps; on a 30 fps camera whose detector keeps up the node steps that camera's tracker at 30 and says
    so once (perception.tracking.pace.StepRateCheck, ObjectTracker.step_at). Frames stamped 1/30 s apart, every other
    one lost to the detector (here: an encoding it cannot read, which stands in for a frame dropped while it was
    busy, deterministically)."""
    image = image_msg(frame(3), compressed=False)
    for index in range(80):
        sec, nanosec = divmod(5_000 * 10**9 + index * 10**9 // 30, 10**9)
        if index % 2:
            lost = Image(height=image.height, width=image.width, encoding="64FC1", step=image.step, data=image.data)
            harness.publish_msg("/cam_b/image_raw", lost, (sec, nanosec))
        else:
            harness.wait_reply("/cam_b/image_raw", harness.publish_msg("/cam_b/image_raw", image, (sec, nanosec)))
    output = harness.node_process.output()
    # (How many frames the detector takes depends on what earlier tests sent this camera: not asserted here.)
    change = "tracking on /cam_b/image_raw: the camera delivers 30 frames a second and the detector takes one in "
    assert output.count(change) == 1, output[-3000:]
    assert "the tracker now steps at 30 (hit_counter_max 45, the same 1.5 s), not at tracking.frame_rate 10" in output
    assert output.count("the camera delivers") == 1  # the other cameras' frames came a second apart
