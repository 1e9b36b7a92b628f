"""The detector node as a managed lifecycle node, driven through the standard lifecycle_msgs services
over real DDS on loopback (``random:tiny`` weights)."""
from __future__ import annotations

import gc
import time
import weakref
from pathlib import Path

import pytest

pytest.importorskip("rclpy", reason="ROS 2 is installed by scripts/install_ros.sh")
pytest.importorskip("vision_msgs.msg", reason="vision_msgs is built by scripts/install_ros.sh")
from detector_node_harness import TINY_NODE_PARAMETERS, Harness, running_node  # noqa: E402
from lifecycle_msgs.msg import Transition  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from ros_harness import ros_session, wait_for  # noqa: E402

from nodes.spinning import BackgroundNode  # noqa: E402
from perception.weights import BUNDLED_MODEL_DIR  # noqa: E402

CAMERA = "/life/image_raw"
PROMPT = "a person . a red mug ."
QUIET_SECONDS = 1.5  # a reply takes tens of milliseconds here; none within this long means none is coming


def published_while(harness, seeds) -> int:
    """Publish frames of ``seeds`` and count the detections that come back within QUIET_SECONDS."""
    before = len(harness.replies[CAMERA])
    for seed in seeds:
        harness.publish(CAMERA, seed)
    time.sleep(QUIET_SECONDS)
    return len(harness.replies[CAMERA]) - before


def test_every_transition_through_the_lifecycle_services(tmp_path):
    parameters = {**TINY_NODE_PARAMETERS, "autostart": "false", "model": str(tmp_path / "no_such_model")}
    with running_node(tmp_path, (CAMERA,), PROMPT, parameters) as harness:
        # autostart false: the node waits, unconfigured, and answers nothing.
        assert harness.state() == "unconfigured"
        assert published_while(harness, [1]) == 0 and not harness.phrases
        # A bad model path: configure fails, the node is back in unconfigured and says why.
        assert harness.change_state(Transition.TRANSITION_CONFIGURE) is False
        assert harness.state() == "unconfigured"
        output = harness.node_process.output()
        assert "configure failed, the node stays unconfigured" in output and "no_such_model" in output, output[-2000:]
        # Start-time parameters change while unconfigured; then configure succeeds.
        assert harness.set_parameter("model", "random:tiny") == (True, "")
        assert harness.change_state(Transition.TRANSITION_CONFIGURE) is True
        assert harness.state() == "inactive"
        assert published_while(harness, [2]) == 0  # inactive: not subscribed, nothing published
        ok, reason = harness.set_parameter("model", "elsewhere")
        assert not ok and "read at configure" in reason
        assert harness.change_state(Transition.TRANSITION_ACTIVATE) is True
        assert harness.state() == "active"
        wait_for(lambda: harness.phrases, 20, "the phrases after activate", harness.node_process)
        assert len(harness.exchange(CAMERA, seed=3).detections) == 4
        # Deactivate: frames sent now are not processed; after activate again, detections resume.
        assert harness.change_state(Transition.TRANSITION_DEACTIVATE) is True
        assert harness.state() == "inactive"
        assert published_while(harness, [4, 5, 6]) == 0
        assert harness.change_state(Transition.TRANSITION_ACTIVATE) is True
        assert len(harness.exchange(CAMERA, seed=7).detections) == 4
        # Cleanup from inactive, then shutdown: the process ends on its own, cleanly.
        assert harness.change_state(Transition.TRANSITION_DEACTIVATE) is True
        assert harness.change_state(Transition.TRANSITION_CLEANUP) is True
        assert harness.state() == "unconfigured"
        assert "cleaned up: the model is released" in harness.node_process.output()
        assert harness.change_state(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN) is True
        wait_for(lambda: not harness.node_process.running(), 30, "the node to exit after shutdown")


def test_shutdown_from_active_exits_cleanly(tmp_path):
    with running_node(tmp_path, (CAMERA,), PROMPT, TINY_NODE_PARAMETERS) as harness:
        assert harness.state() == "active"  # autostart (the default) configured and activated it
        harness.exchange(CAMERA, seed=1)
        assert harness.change_state(Transition.TRANSITION_ACTIVE_SHUTDOWN) is True
        wait_for(lambda: not harness.node_process.running(), 30, "the node to exit after shutdown")


def resident_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def one_cycle(harness, seeds) -> float:
    """configure, activate, answer ``seeds``' frames, deactivate; the node's resident MB before cleanup."""
    assert harness.change_state(Transition.TRANSITION_CONFIGURE) is True
    assert harness.change_state(Transition.TRANSITION_ACTIVATE) is True
    for seed in seeds:
        harness.exchange(CAMERA, seed=seed)
    assert harness.change_state(Transition.TRANSITION_DEACTIVATE) is True
    return resident_mb(harness.node_process.process.pid)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_cleanup_gives_the_memory_back(tmp_path):
    """The bundled model, two configure-to-cleanup cycles in the node's own process. The first cycle also
    pays what stays for the process's life (libraries' lazy set-up, kernel caches); from the second on,
    cleanup must bring the node back to the size the first cleanup left, however large it grew meanwhile."""
    parameters = {**{k: v for k, v in TINY_NODE_PARAMETERS.items() if k != "model"}, "autostart": "false"}
    with running_node(tmp_path, (CAMERA,), PROMPT, parameters) as harness:
        one_cycle(harness, [1, 2])
        assert harness.change_state(Transition.TRANSITION_CLEANUP) is True
        after_first = resident_mb(harness.node_process.process.pid)
        loaded = one_cycle(harness, [3, 4, 5])
        assert harness.change_state(Transition.TRANSITION_CLEANUP) is True
        after_second = resident_mb(harness.node_process.process.pid)
    model_mb = (BUNDLED_MODEL_DIR / "model.safetensors").stat().st_size / 2**20
    print(f"resident MB: after the first cleanup {after_first:.0f}, loaded again {loaded:.0f}, "
          f"after the second cleanup {after_second:.0f} (weights {model_mb:.0f} MB)")
    assert loaded - after_first >= model_mb  # the model was resident between the cleanups
    assert after_second - after_first <= 0.25 * (loaded - after_first), "cleanup kept the model's memory"


def test_cleanup_releases_the_detector(tmp_path):
    from nodes.detector_node import DetectorNode

    overrides = [Parameter("autostart", value=False), Parameter("model", value="random:tiny"),
                 Parameter("cameras", value=[CAMERA])]
    with ros_session(tmp_path):
        spun = BackgroundNode("grounding_dino", DetectorNode(parameter_overrides=overrides))
        harness = Harness(tmp_path, (CAMERA,))
        try:
            assert harness.change_state(Transition.TRANSITION_CONFIGURE) is True
            detector = weakref.ref(spun.node.detector)
            model_bytes = sum(p.numel() * p.element_size() for p in detector().model.parameters())
            assert model_bytes > 0
            assert harness.change_state(Transition.TRANSITION_ACTIVATE) is True
            assert harness.change_state(Transition.TRANSITION_DEACTIVATE) is True
            assert detector() is not None  # deactivate keeps the model
            assert harness.change_state(Transition.TRANSITION_CLEANUP) is True
            gc.collect()
            assert spun.node.detector is None and detector() is None, "cleanup left the detector alive"
        finally:
            harness.listener.close()
            spun.close()


def test_configure_sets_the_parameters_the_model_tunes_and_the_user_left_alone(tmp_path):
    """bundled:crowds carries box_threshold 0.4, tracking.duplicate_iou 0.5, tracking.kalman_process_noise 0.003,
    tracking.kalman_carry false and tracking.cross_phrase_iou 0.7 (its tuned_settings.yaml; also
    crowd_measurement_noise, which applies only between consecutive frames and has no parameter: the node tracks at
    the detector's pace, and configure leaves it out, saying so, instead of failing on it). Configure sets those left
    at their defaults, so the parameters show what runs; a parameter the user gave stays; another model puts the
    ones set for this one back; model_settings false keeps the parameters as given."""
    names = ("box_threshold", "tracking.duplicate_iou", "tracking.kalman_process_noise", "tracking.cross_phrase_iou",
             "tracking.kalman_carry")
    parameters = {**TINY_NODE_PARAMETERS, "autostart": "false", "model": "bundled:crowds", "dtype": "float32",
                  "tracking.kalman_process_noise": "0.05"}
    del parameters["box_threshold"], parameters["tracking.duplicate_iou"]
    with running_node(tmp_path, (CAMERA,), PROMPT, parameters) as harness:
        assert harness.get_parameters(*names) == dict(zip(names, (0.35, 0.7, 0.05, 1.0, True)))
        assert harness.change_state(Transition.TRANSITION_CONFIGURE) is True
        assert harness.get_parameters(*names) == dict(zip(names, (0.4, 0.5, 0.05, 0.7, False)))
        output = harness.node_process.output()
        assert "parameters set at configure from the settings tuned for the model" in output, output[-2000:]
        assert ("box_threshold 0.4, tracking.duplicate_iou 0.5, tracking.kalman_carry False, "
                "tracking.cross_phrase_iou 0.7;") in output
        assert "tuned_settings.yaml" in output
        # Its crowd_measurement_noise has no parameter: the node says it is not used, and why.
        assert ("not used: crowd_measurement_noise 16; they apply only between consecutive frames the detector took, "
                "and the node tracks at the detector's pace") in output
        # Another model without tuned settings: what configure set goes back to the defaults.
        assert harness.change_state(Transition.TRANSITION_CLEANUP) is True
        assert harness.set_parameter("model", "random:tiny") == (True, "")
        assert harness.change_state(Transition.TRANSITION_CONFIGURE) is True
        assert harness.get_parameters(*names) == dict(zip(names, (0.35, 0.7, 0.05, 1.0, True)))
        assert "parameters set back to their defaults at configure" in harness.node_process.output()
        # model_settings false: the parameters as given, with the crowd model too.
        assert harness.change_state(Transition.TRANSITION_CLEANUP) is True
        assert harness.set_parameter("model", "bundled:crowds") == (True, "")
        assert harness.set_parameter("model_settings", False) == (True, "")
        assert harness.change_state(Transition.TRANSITION_CONFIGURE) is True
        assert harness.get_parameters(*names) == dict(zip(names, (0.35, 0.7, 0.05, 1.0, True)))
        assert harness.change_state(Transition.TRANSITION_CLEANUP) is True
