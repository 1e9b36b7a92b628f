"""Generated RGB-D scenes (perception.training.rgbd): exact 3D ground truth consistent with the camera, a
wall behind every object, nearer objects in front, and a depth image with a sensor's noise and holes."""
from dataclasses import replace

import numpy as np
import pytest

from perception.spatial.evaluation import evaluate_on_generated_scenes
from perception.training.rgbd import RgbdSceneConfig, generate_rgbd_scene
from perception.training.synthetic import SceneConfig

EXACT = replace(RgbdSceneConfig(), depth_noise=0.0, dropout=0.0, max_invalid_band=0.0, edge_dropout=0.0,
                flying_pixels=0.0)


def depth_edges(depth: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour more than 2% nearer or farther: the generator's depth edges."""
    edges = np.zeros(depth.shape, bool)
    for axis in (0, 1):
        jumps = np.abs(np.diff(np.log(depth), axis=axis)) > np.log1p(0.02)
        before, after = [slice(None)] * 2, [slice(None)] * 2
        before[axis], after[axis] = slice(None, -1), slice(1, None)
        edges[tuple(before)] |= jumps
        edges[tuple(after)] |= jumps
    return edges


def test_same_seed_same_scene_other_seed_other_scene():
    first, again, other = generate_rgbd_scene(3), generate_rgbd_scene(3), generate_rgbd_scene(4)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.depth, again.depth)
    assert [item.phrase for item in first.objects] == [item.phrase for item in again.objects]
    assert not np.array_equal(first.depth, other.depth)


def test_images_depth_and_phrases_have_the_documented_forms():
    config = RgbdSceneConfig()
    scene = generate_rgbd_scene(5, (200, 300), config)
    assert scene.image.shape == (200, 300, 3) and scene.image.dtype == np.uint8
    assert scene.depth.shape == (200, 300) and scene.depth.dtype == np.float32
    assert (scene.intrinsics.width, scene.intrinsics.height) == (300, 200)
    assert scene.intrinsics.fx == pytest.approx(150 / np.tan(np.radians(config.horizontal_fov_deg) / 2))
    assert all(item.phrase in config.scene.phrases for item in scene.objects)


@pytest.mark.parametrize("seed", range(10))
def test_true_3d_boxes_project_exactly_onto_the_2d_boxes(seed):
    scene = generate_rgbd_scene(seed)
    camera = scene.intrinsics
    for item in scene.objects:
        x, y, z = item.center
        width, height, thickness = item.size
        assert thickness == 0.0  # a flat card
        # Left and right edges of the card project to pixel-edge coordinates u + 0.5.
        left = camera.fx * (x - width / 2) / z + camera.cx + 0.5
        right = camera.fx * (x + width / 2) / z + camera.cx + 0.5
        top = camera.fy * (y - height / 2) / z + camera.cy + 0.5
        bottom = camera.fy * (y + height / 2) / z + camera.cy + 0.5
        assert (left, top, right, bottom) == pytest.approx(item.box, abs=1e-9)


@pytest.mark.parametrize("seed", range(10))
def test_each_object_is_drawn_at_its_depth_in_front_of_the_wall_and_hides_what_is_behind(seed):
    config = EXACT
    scene = generate_rgbd_scene(seed, config=config)
    depths = np.array([item.center[2] for item in scene.objects])
    assert (np.diff(depths) <= 0).all()  # back to front
    assert ((depths >= config.min_depth) & (depths <= config.max_depth)).all()
    owned = np.zeros(scene.depth.shape, bool)
    for item in scene.objects:
        at_depth = scene.depth == np.float32(item.center[2])
        rows, cols = np.nonzero(at_depth)
        x0, y0, x1, y1 = item.box
        # Its pixels lie in its box, and nearer objects take their share: visibility = what is left.
        assert ((cols >= x0) & (cols < x1) & (rows >= y0) & (rows < y1)).all()
        assert (at_depth.sum() > 0) == (item.visibility > 0)
        assert item.visibility >= config.scene.min_visibility
        owned |= at_depth
    wall = scene.depth[~owned]
    assert wall.min() >= depths.max() + config.min_wall_gap - 1e-5


def test_scenes_hold_partial_occlusions_and_a_tilted_wall():
    scenes = [generate_rgbd_scene(seed, config=EXACT) for seed in range(20)]
    visibilities = [item.visibility for scene in scenes for item in scene.objects]
    assert sum(0.5 <= value < 0.9 for value in visibilities) >= 5
    # The wall is a plane: its depth changes from one border to the other when it is tilted.
    corners = [scene.depth[[0, 0, -1, -1], [0, -1, 0, -1]] for scene in scenes]
    assert sum(np.ptp(values) > 0.05 * values.mean() for values in corners) >= 10


def test_the_sensor_adds_noise_growing_with_depth_and_holes_at_zero():
    noisy, exact = generate_rgbd_scene(11), generate_rgbd_scene(11, config=replace(RgbdSceneConfig(), depth_noise=0.0))
    missing = noisy.depth == 0
    assert np.array_equal(missing, exact.depth == 0)  # the same holes: noise is drawn either way
    assert 0.02 <= missing.mean() <= 0.2
    relative = (noisy.depth[~missing] - exact.depth[~missing]) / exact.depth[~missing] ** 2
    assert np.std(relative) == pytest.approx(RgbdSceneConfig().depth_noise, rel=0.1)
    # Holes are more frequent where the depth jumps (object borders) than elsewhere.
    edges = depth_edges(generate_rgbd_scene(11, config=EXACT).depth)
    assert missing[edges].mean() > 5 * missing[~edges].mean()


def test_flying_pixels_lie_at_depth_edges_between_the_two_surfaces():
    exact = replace(RgbdSceneConfig(), depth_noise=0.0)
    flying, clean = generate_rgbd_scene(11, config=exact), generate_rgbd_scene(11, config=replace(exact, flying_pixels=0.0))
    truth = generate_rgbd_scene(11, config=EXACT).depth
    changed = (clean.depth > 0) & (flying.depth != clean.depth)
    edges = depth_edges(truth)
    assert not (changed & ~edges).any()
    assert changed.sum() == pytest.approx(exact.flying_pixels * ((clean.depth > 0) & edges).sum(), rel=0.2)
    # Between the nearest and the farthest surface around the pixel.
    nearest = np.min([np.roll(truth, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    farthest = np.max([np.roll(truth, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    assert ((flying.depth >= nearest) & (flying.depth <= farthest))[changed].all()


def test_the_16uc1_form_is_millimetres_with_zero_where_invalid():
    scene = generate_rgbd_scene(2)
    millimetres = scene.depth_16uc1()
    assert millimetres.dtype == np.uint16
    assert np.array_equal(millimetres == 0, scene.depth == 0)
    assert np.abs(millimetres / 1000.0 - scene.depth).max() <= 0.0005 + 1e-6


def test_bad_requests_are_refused():
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        generate_rgbd_scene(-1)
    with pytest.raises(ValueError, match="min_depth <= max_depth"):
        RgbdSceneConfig(min_depth=2.0, max_depth=1.0)
    with pytest.raises(ValueError, match="max_wall_tilt_deg"):
        RgbdSceneConfig(max_wall_tilt_deg=60.0)
    with pytest.raises(ValueError, match="dropout must be in"):
        RgbdSceneConfig(dropout=1.0)


def test_evaluation_reports_the_estimate_beside_the_naive_box_median():
    config = replace(RgbdSceneConfig(), scene=SceneConfig(min_objects=2, max_objects=4, min_visibility=0.5))
    result = evaluate_on_generated_scenes(15, first_seed=50, config=config, encoding="32FC1")
    estimate, naive = result["estimate"], result["naive_box_median"]
    assert estimate["objects"] == naive["objects"] >= 30
    assert set(estimate) == {"objects", "missing", "median_relative_error", "p90_relative_error",
                             "median_error_m", "p90_error_m"}
    # The wall in the boxes' corners and occluders pull the naive median; the estimate stays on the object.
    assert naive["p90_relative_error"] > 0.1 > 0.02 > estimate["p90_relative_error"]
