"""The demo's default input: a deterministic generated clip that PyAV reads back frame for frame."""
from __future__ import annotations

import av

from perception.demo_clip import write_demo_clip


def test_demo_clip_is_playable_and_names_its_objects(tmp_path):
    path = tmp_path / "scene.mp4"
    phrases = write_demo_clip(str(path), num_frames=20)
    assert phrases == ["blue cross", "yellow circle", "orange square", "green star"]
    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 20 and frames[0].shape == (240, 320, 3)


def test_gdino_demo_clip_prints_a_prompt_naming_the_objects(tmp_path, capsys):
    from perception.cli.main import main

    assert main(["demo-clip", str(tmp_path / "clip.mp4")]) == 0
    assert capsys.readouterr().out.strip() == "blue cross . yellow circle . orange square . green star ."
