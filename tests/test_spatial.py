"""3D centre and size from a registered depth image (perception.spatial), on generated RGB-D scenes and on
depth images built to hold one difficulty each: an occluder, a near sliver, background around and through
the object, invalid depth."""
import numpy as np
import pytest

from perception.spatial import (CameraIntrinsics, Object3D, TrackSmoother, depth_in_metres, depth_in_millimetres,
                                estimate_object_3d)
from perception.spatial.evaluation import evaluate_on_generated_scenes
from perception.training.sprites import draw_sprite

CAMERA = CameraIntrinsics(fx=300.0, fy=300.0, cx=159.5, cy=119.5, width=320, height=240)
WALL_M, OBJECT_M, OCCLUDER_M = 3.0, 1.5, 1.0
BOX = (120.0, 80.0, 200.0, 160.0)  # an 80 x 80 pixel object


def object_on_wall(kind: str = "circle") -> tuple[np.ndarray, np.ndarray]:
    """(240, 320) float32 metres: a wall with one `kind` sprite of BOX's size at OBJECT_M; and its mask."""
    depth = np.full((CAMERA.height, CAMERA.width), WALL_M, np.float32)
    mask = draw_sprite(kind, "red", 80, np.random.default_rng(0)).mask
    x0, y0 = int(BOX[0]), int(BOX[1])
    mask_box = (x0, y0, x0 + mask.shape[1], y0 + mask.shape[0])
    depth[mask_box[1]:mask_box[3], mask_box[0]:mask_box[2]][mask] = OBJECT_M
    return depth, mask_box


def ring_on_wall(inner: float = 0.7) -> np.ndarray:
    """A ring (outer radius 40 px, inner radius inner * 40 px) filling BOX at OBJECT_M: the wall shows
    through its middle and in the box's corners, 60% of the box."""
    depth = np.full((CAMERA.height, CAMERA.width), WALL_M, np.float32)
    rows, cols = np.mgrid[0:CAMERA.height, 0:CAMERA.width] + 0.5
    radius = np.hypot(cols - 160.0, rows - 120.0)
    depth[(radius <= 40) & (radius >= 40 * inner)] = OBJECT_M
    return depth


def assert_depth_is(estimate: Object3D | None, expected_m: float, relative: float = 0.01) -> None:
    assert estimate is not None
    assert estimate.center[2] == pytest.approx(expected_m, rel=relative)


# --- depth encodings -------------------------------------------------------------------------------------

def test_16uc1_millimetres_become_metres_and_zero_is_invalid():
    metres = depth_in_metres(np.array([[0, 1, 1500, 65535]], np.uint16), "16UC1")
    assert metres.dtype == np.float32 and metres.shape == (1, 4)
    assert np.isnan(metres[0, 0])
    assert metres[0, 1:].tolist() == pytest.approx([0.001, 1.5, 65.535], rel=1e-6)


def test_32fc1_zero_negative_nan_and_inf_are_invalid_and_the_input_is_kept():
    image = np.array([[0.0, -1.0, np.nan, np.inf, 2.25]], np.float32)
    metres = depth_in_metres(image, "32FC1")
    assert np.isnan(metres[0, :4]).all() and metres[0, 4] == 2.25
    assert image[0, 0] == 0.0 and image[0, 1] == -1.0  # not converted in place


@pytest.mark.parametrize(
    "image, encoding, message",
    [
        (np.zeros((2, 2), np.uint16), "mono16", "must be one of 16UC1, 32FC1"),
        (np.zeros((2, 2), np.float32), "16UC1", "must have dtype uint16, got float32"),
        (np.zeros((2, 2), np.float64), "32FC1", "must have dtype float32, got float64"),
        (np.zeros((2, 2, 1), np.uint16), "16UC1", r"2-D \(H, W\) array, got shape \(2, 2, 1\)"),
    ],
)
def test_other_encodings_dtypes_and_shapes_are_refused(image, encoding, message):
    with pytest.raises(ValueError, match=message):
        depth_in_metres(image, encoding)


def test_metres_to_16uc1_rounds_to_millimetres_and_keeps_invalid_at_zero():
    millimetres = depth_in_millimetres(np.array([[np.nan, 0.0, -2.0, 1.2344, 1.2346]]))
    assert millimetres.dtype == np.uint16 and millimetres.tolist() == [[0, 0, 0, 1234, 1235]]
    with pytest.raises(ValueError, match="16UC1 holds depths up to 65.535 m"):
        depth_in_millimetres(np.array([[70.0]]))


# --- camera -----------------------------------------------------------------------------------------------

def test_intrinsics_from_camera_info_k():
    camera = CameraIntrinsics.from_k([525.0, 0, 319.5, 0, 526.0, 239.5, 0, 0, 1], 640, 480)
    assert (camera.fx, camera.fy, camera.cx, camera.cy, camera.width, camera.height) == (525, 526, 319.5, 239.5, 640, 480)
    assert camera.back_project(319.5 + 52.5, 239.5, 2.0).tolist() == pytest.approx([0.2, 0.0, 2.0])
    with pytest.raises(ValueError, match="not calibrated"):
        CameraIntrinsics.from_k([0.0] * 9, 640, 480)  # CameraInfo's default
    with pytest.raises(ValueError, match="9 values"):
        CameraIntrinsics.from_k([525.0, 0, 319.5], 640, 480)
    with pytest.raises(ValueError, match="skew"):
        CameraIntrinsics.from_k([525.0, 1.0, 319.5, 0, 526.0, 239.5, 0, 0, 1], 640, 480)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        CameraIntrinsics(fx=1.0, fy=1.0, cx=0.0, cy=0.0, width=0, height=480)


def test_depth_of_another_size_than_the_colour_image_is_refused():
    depth = np.full((480, 640), 2.0, np.float32)  # the depth sensor's own resolution, not registered
    with pytest.raises(ValueError, match="depth image is 640x480 but the colour camera is 320x240: "
                                         r"the depth must be registered \(aligned\) to the colour image"):
        estimate_object_3d(depth, BOX, CAMERA)


# --- the estimate -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_generated_scenes_centres_within_2_percent_median_and_5_percent_p90(encoding):
    # Objects at least half visible, true boxes, the depth as a driver publishes it; the targets.
    result = evaluate_on_generated_scenes(60, first_seed=1000, encoding=encoding)["estimate"]
    assert result["objects"] >= 150 and result["missing"] == 0
    assert result["median_relative_error"] <= 0.02
    assert result["p90_relative_error"] <= 0.05


def test_generated_scenes_sizes_of_visible_objects_are_exact_to_2_percent():
    from perception.training.rgbd import generate_rgbd_scene

    for seed in range(20):
        scene = generate_rgbd_scene(seed)
        depth_m = depth_in_metres(scene.depth, "32FC1")
        for item in scene.objects:
            if item.visibility >= 0.9:
                estimate = estimate_object_3d(depth_m, item.box, scene.intrinsics)
                assert np.linalg.norm(estimate.center - item.center) <= 0.02 * np.linalg.norm(item.center)
                assert estimate.size[:2] == pytest.approx(item.size[:2], rel=0.02)
                # A flat card: the depth extent is the sensor's noise, a few cm at most at 3 m.
                assert estimate.size[2] <= 0.02 * item.center[2]


@pytest.mark.parametrize("side", ["left", "right", "top", "bottom"])
def test_an_occluder_covering_40_percent_of_the_box_does_not_pull_the_depth(side):
    depth, box = object_on_wall("circle")
    x0, y0, x1, y1 = box
    cover = int(0.4 * (x1 - x0))
    # The occluder is another object: it crosses the box's border and goes on outside it.
    region = {
        "left": (slice(y0 - 20, y1 + 20), slice(x0 - 40, x0 + cover)),
        "right": (slice(y0 - 20, y1 + 20), slice(x1 - cover, x1 + 40)),
        "top": (slice(y0 - 40, y0 + cover), slice(x0 - 20, x1 + 20)),
        "bottom": (slice(y1 - cover, y1 + 40), slice(x0 - 20, x1 + 20)),
    }[side]
    depth[region] = OCCLUDER_M
    assert_depth_is(estimate_object_3d(depth, box, CAMERA), OBJECT_M)


def test_a_near_sliver_across_the_box_does_not_pull_the_depth():
    depth, box = object_on_wall("square")
    depth[:, 150:156] = OCCLUDER_M  # a pole in front, 6 px of an 80 px box, over the whole image height
    assert_depth_is(estimate_object_3d(depth, box, CAMERA), OBJECT_M)


@pytest.mark.parametrize("kind", ["star", "cross"])
def test_background_in_the_box_corners_does_not_push_the_depth(kind):
    depth, box = object_on_wall(kind)  # the wall fills 61% (star) and 50% (cross) of the box
    assert_depth_is(estimate_object_3d(depth, box, CAMERA), OBJECT_M)


def test_background_seen_through_a_hollow_object_does_not_push_the_depth():
    # The wall fills the ring's middle, where the box's weight is, and its corners.
    assert_depth_is(estimate_object_3d(ring_on_wall(), BOX, CAMERA), OBJECT_M)


def test_flying_pixels_between_two_close_surfaces_do_not_join_them():
    # A star 6 cm (4%) in front of a board that shows between its arms and goes on outside the box; the
    # star's border pixels mix the two depths, as time-of-flight sensors do, filling the gap between them.
    depth, box = object_on_wall("star")
    board = 1.56
    depth[depth == WALL_M] = board
    border = np.zeros(depth.shape, bool)
    border[:, 1:] |= np.diff(depth, axis=1) != 0
    border[:, :-1] |= np.diff(depth, axis=1) != 0
    border[1:, :] |= np.diff(depth, axis=0) != 0
    depth[border] = np.random.default_rng(0).uniform(OBJECT_M, board, size=border.sum())
    estimate = estimate_object_3d(depth, box, CAMERA)
    assert_depth_is(estimate, OBJECT_M, relative=0.002)
    assert estimate.size[2] <= 0.005  # the star is flat: its cluster holds no board depths


def test_the_depth_extent_is_the_spread_of_the_object_not_of_the_box():
    depth, box = object_on_wall("square")
    # A card turned about the vertical axis: its depth runs from 1.4 m to 1.6 m across its columns.
    ramp = np.linspace(1.4, 1.6, box[2] - box[0], dtype=np.float32)[None, :].repeat(box[3] - box[1], axis=0)
    region = depth[box[1]:box[3], box[0]:box[2]]
    region[region == OBJECT_M] = ramp[region == OBJECT_M]
    estimate = estimate_object_3d(depth, box, CAMERA)
    assert estimate.center[2] == pytest.approx(1.5, abs=0.01)
    # The 10th-90th percentile spread of the columns the estimate samples; the wall adds nothing.
    assert 0.09 <= estimate.size[2] <= 0.17


@pytest.mark.parametrize("invalid", [np.nan, 0.0, np.inf, -1.0])
def test_a_box_without_valid_depth_gives_none(invalid):
    depth, box = object_on_wall("circle")
    depth[box[1] - 2:box[3] + 2, box[0] - 2:box[2] + 2] = invalid
    assert estimate_object_3d(depth, box, CAMERA) is None


def test_too_few_valid_pixels_give_none_and_enough_give_an_estimate():
    depth = np.full((CAMERA.height, CAMERA.width), np.nan, np.float32)
    depth[118:121, 158:161] = 2.0  # 9 valid pixels at the box's centre
    every_pixel = {"max_samples": 80 * 80}
    assert estimate_object_3d(depth, BOX, CAMERA, min_pixels=10, **every_pixel) is None
    assert_depth_is(estimate_object_3d(depth, BOX, CAMERA, min_pixels=9, **every_pixel), 2.0)


def test_the_centre_and_size_are_the_box_back_projected_at_the_object_depth():
    depth, box = object_on_wall("square")
    estimate = estimate_object_3d(depth, box, CAMERA)
    # Box columns 120..199 have pixel centres u = 120..199 (centre 159.5 = cx); rows 80..159 (centre 119.5 = cy).
    assert estimate.center.tolist() == pytest.approx([0.0, 0.0, OBJECT_M], abs=1e-9)
    assert estimate.size.tolist() == pytest.approx([80 * OBJECT_M / 300, 80 * OBJECT_M / 300, 0.0], abs=1e-9)
    # The object's pixels in the box's ellipse (the square fills 84% of its box).
    assert estimate_object_3d(depth, box, CAMERA, max_samples=6400).depth_pixels > 0.9 * np.pi / 4 * 80 * 80 * 0.84


def test_a_large_box_is_sampled_on_a_grid_with_the_same_result():
    from perception.training.rgbd import generate_rgbd_scene

    scene = generate_rgbd_scene(1, (480, 640))
    depth_m = depth_in_metres(scene.depth, "32FC1")
    for box in [item.box for item in scene.objects] + [(0.0, 0.0, 640.0, 480.0)]:
        sampled = estimate_object_3d(depth_m, box, scene.intrinsics, max_samples=2000)
        every = estimate_object_3d(depth_m, box, scene.intrinsics, max_samples=640 * 480)
        assert sampled.depth_pixels <= 2000 < every.depth_pixels
        assert sampled.center[2] == pytest.approx(every.center[2], rel=0.005)


def test_bad_boxes_are_refused():
    depth, _ = object_on_wall()
    for box in [(10, 10, 5, 20), (0, 0, np.nan, 10), (0, 0, 10)]:
        with pytest.raises(ValueError, match="box must be finite xyxy"):
            estimate_object_3d(depth, box, CAMERA)


# --- smoothing --------------------------------------------------------------------------------------------

def object_at(x: float, z: float = 2.0, pixels: int = 100) -> Object3D:
    return Object3D(center=np.array([x, 0.0, z]), size=np.array([0.3, 0.3, 0.1]), depth_pixels=pixels)


def test_smoothing_halves_the_noise_and_converges_to_a_moved_object():
    smoother = TrackSmoother(alpha=0.5)
    rng = np.random.default_rng(0)
    measured = 1.0 + rng.normal(0, 0.01, size=400)
    smoothed = [smoother.update(7, 0.033 * i, object_at(x)).center[0] for i, x in enumerate(measured)]
    # An exponential average with alpha 0.5 keeps 1/3 of white noise's variance.
    assert np.std(smoothed[10:]) < 0.7 * np.std(measured[10:])
    # The object moves by 0.2 m (within the jump threshold): the error halves with every update.
    moved = [smoother.update(7, 14.0 + 0.033 * i, object_at(1.2)).center[0] for i in range(8)]
    assert moved[0] == pytest.approx(0.5 * (smoothed[-1] + 1.2))
    assert abs(moved[-1] - 1.2) < 0.2 * 0.5**7
    assert smoother.update(7, 15.0, object_at(1.2, pixels=42)).depth_pixels == 42


def test_a_jump_a_stale_track_and_a_stamp_going_back_restart_the_track():
    smoother = TrackSmoother(alpha=0.5, max_age_s=2.0, max_jump_m=0.5)
    smoother.update(1, 0.0, object_at(0.0))
    assert smoother.update(1, 0.1, object_at(1.0)).center[0] == 1.0  # 1 m > max_jump_m
    assert smoother.update(1, 0.2, object_at(1.2)).center[0] == pytest.approx(1.1)
    assert smoother.update(1, 2.3, object_at(1.4)).center[0] == 1.4  # 2.1 s since the last update: forgotten
    assert smoother.update(1, 2.0, object_at(1.0)).center[0] == 1.0  # a stamp before the last one
    assert smoother.update(2, 2.1, object_at(5.0)).center[0] == 5.0  # tracks are separate
    assert len(smoother) == 2


def test_stale_tracks_are_forgotten_and_reset_forgets_all():
    smoother = TrackSmoother(max_age_s=1.0)
    for track_id in range(5):
        smoother.update(track_id, 0.0, object_at(0.0))
    smoother.update(9, 1.5, object_at(0.0))
    assert len(smoother) == 1
    smoother.reset()
    assert len(smoother) == 0
    assert smoother.update(9, 1.6, object_at(1.0)).center[0] == 1.0


@pytest.mark.parametrize("arguments, message", [
    ({"alpha": 0.0}, r"alpha must be in \(0, 1\]"),
    ({"max_age_s": -1.0}, "max_age_s must be a positive number of seconds"),
    ({"max_jump_m": float("nan")}, "max_jump_m must be a positive number of metres"),
])
def test_smoother_arguments_are_checked(arguments, message):
    with pytest.raises(ValueError, match=message):
        TrackSmoother(**arguments)
