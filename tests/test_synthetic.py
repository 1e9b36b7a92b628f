"""The scene and video generator: deterministic per seed, exact boxes, MOTChallenge ground truth."""
import numpy as np
import pytest

from perception.training.sprites import KINDS, draw_sprite
from perception.training.synthetic import (
    SceneConfig,
    VideoConfig,
    generate_scene,
    generate_video,
    write_mot_sequence,
)


def test_same_seed_same_scene_other_seed_other_scene():
    first, again, other = generate_scene(7), generate_scene(7), generate_scene(8)
    assert np.array_equal(first.image, again.image)
    assert first.objects == again.objects
    assert not np.array_equal(first.image, other.image)


def test_scenes_hold_vocabulary_phrases_inside_the_image():
    config = SceneConfig()
    for seed in range(20):
        scene = generate_scene(seed, (256, 320), config)
        assert scene.image.shape == (256, 320, 3) and scene.image.dtype == np.uint8
        assert 1 <= len(scene.objects) <= config.max_objects
        assert set(scene.labels) <= set(config.phrases)
        boxes = scene.boxes
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= 320).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= 256).all()
        shorter = 256 * config.min_object_size
        assert (np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= shorter - 1).all()
        assert all(item.visibility >= config.min_visibility for item in scene.objects)


@pytest.mark.parametrize("seed", range(6))
def test_box_bounds_the_drawn_pixels_exactly(seed):
    # One object on a plain background without camera effects: the pixels that differ from the
    # background are the object's, and the box must be their tight bounding box.
    config = SceneConfig(min_objects=1, max_objects=1, backgrounds=("solid",), max_noise_std=0.0, blur_probability=0.0)
    scene = generate_scene(seed, (160, 200), config)
    background = scene.image[0, 0] if scene.objects[0].box[:2] != (0.0, 0.0) else scene.image[-1, -1]
    drawn = np.any(scene.image != background, axis=2)
    rows, cols = np.nonzero(drawn)
    assert scene.objects[0].box == (cols.min(), rows.min(), cols.max() + 1.0, rows.max() + 1.0)
    assert scene.objects[0].visibility == 1.0


def test_every_kind_draws_a_tight_sprite():
    rng = np.random.default_rng(0)
    for kind in KINDS:
        sprite = draw_sprite(kind, "blue", 60, rng)
        assert sprite.mask.shape == sprite.rgb.shape[:2]
        assert max(sprite.mask.shape) >= 50, kind
        # Tight crop: every border row and column holds a drawn pixel.
        for edge in (sprite.mask[0], sprite.mask[-1], sprite.mask[:, 0], sprite.mask[:, -1]):
            assert edge.any(), kind


def test_video_is_deterministic_and_keeps_track_ids():
    frames, tracks = generate_video(3, 12, (120, 160))
    again_frames, again_tracks = generate_video(3, 12, (120, 160))
    assert len(frames) == len(tracks) == 12
    assert all(np.array_equal(a, b) for a, b in zip(frames, again_frames)) and tracks == again_tracks
    ids = [item.track_id for item in tracks[0]]
    assert ids == list(range(1, len(ids) + 1))
    for objects in tracks:
        assert [item.track_id for item in objects] == ids
        assert [item.phrase for item in objects] == [item.phrase for item in tracks[0]]
        for item in objects:
            x0, y0, x1, y1 = item.box
            assert 0 <= x0 < x1 <= 160 and 0 <= y0 < y1 <= 120 and 0 <= item.visibility <= 1


def test_video_objects_move_smoothly_at_the_configured_speed():
    config = VideoConfig(min_speed=2.0, max_speed=3.0)
    _, tracks = generate_video(11, 30, (200, 240), config)
    centres = np.array([[((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for _, _, b, _ in objects] for objects in tracks])
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=2)
    assert steps.max() <= 3.0 + 1.5  # rounding to whole pixels adds at most ~1.4 per step
    assert steps.mean() >= 1.5


def test_mot_sequence_rows_match_the_tracks(tmp_path):
    _, tracks = generate_video(5, 8, (120, 160))
    folder = write_mot_sequence(tmp_path / "synthetic-0005", tracks, (120, 160), fps=10, min_visibility=0.5)
    rows = np.loadtxt(folder / "gt" / "gt.txt", delimiter=",").reshape(-1, 9)
    assert len(rows) == sum(len(objects) for objects in tracks)
    for frame, objects in enumerate(tracks, start=1):
        for item in objects:
            row = rows[(rows[:, 0] == frame) & (rows[:, 1] == item.track_id)]
            x0, y0, x1, y1 = item.box
            np.testing.assert_allclose(row[0, 2:6], [x0, y0, x1 - x0, y1 - y0], atol=0.01)
            assert row[0, 6] == (item.visibility >= 0.5) and row[0, 7] == 1
    seqinfo = (folder / "seqinfo.ini").read_text()
    assert "seqLength=8" in seqinfo and "imWidth=160" in seqinfo and "imHeight=120" in seqinfo


def test_bad_requests_say_what_is_allowed():
    with pytest.raises(ValueError, match="non-negative integer"):
        generate_scene(-1)
    with pytest.raises(ValueError, match="at least 64"):
        generate_scene(0, (32, 320))
    with pytest.raises(ValueError, match="num_frames"):
        generate_video(0, 0)
    with pytest.raises(ValueError, match="subset"):
        SceneConfig(colours=("teal",))
    with pytest.raises(ValueError, match="min_object_size"):
        SceneConfig(min_object_size=0.5, max_object_size=0.2)
    with pytest.raises(ValueError, match="min_speed"):
        VideoConfig(min_speed=3.0, max_speed=1.0)
