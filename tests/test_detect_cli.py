"""`gdino detect` with the bundled model on real files: each image is detected or refused on its own."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from perception.camera_messages import ImageTooLargeError
from perception.cli.detect import read_rgb
from perception.eval.grounding import EVAL_FIRST_SEED
from perception.training.synthetic import generate_scene
from test_conversions import png_bomb


def gdino_detect(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "perception.cli.main", "detect", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("images")
    scene = generate_scene(EVAL_FIRST_SEED + 1000, (256, 256))
    paths = {name: folder / name for name in
             ["scene.png", "astronaut.jpg", "thin.png", "truncated.jpg", "text.png", "bomb.png", "fifo.png"]}
    cv2.imwrite(str(paths["scene.png"]), scene.image[:, :, ::-1])
    cv2.imwrite(str(paths["astronaut.jpg"]), data.astronaut()[:, :, ::-1])
    cv2.imwrite(str(paths["thin.png"]), np.full((1, 3000, 3), 90, np.uint8))
    jpeg = paths["astronaut.jpg"].read_bytes()
    paths["truncated.jpg"].write_bytes(jpeg[:300])  # the header tables, then the file ends
    paths["text.png"].write_text("these are words, not pixels\n")
    paths["bomb.png"].write_bytes(png_bomb(12000, 12000))
    os.mkfifo(paths["fifo.png"])  # reading it would block forever
    paths["folder"] = folder / "a_folder.png"
    paths["folder"].mkdir()
    paths["missing"] = folder / "missing.jpg"
    paths["prompt"] = " . ".join(sorted({obj.phrase for obj in scene.objects}))
    return paths


def test_files_decode_exactly_as_opencv_reads_them_and_a_bomb_is_refused(files):
    for name in ["scene.png", "astronaut.jpg", "thin.png"]:
        expected = cv2.cvtColor(cv2.imread(str(files[name]), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(read_rgb(files[name], 50_000_000), expected)
    with pytest.raises(ImageTooLargeError, match="12000x12000"):
        read_rgb(files["bomb.png"], 50_000_000)


def test_bad_files_are_refused_one_by_one_and_cost_the_good_ones_nothing(files):
    good = [files["scene.png"], files["astronaut.jpg"], files["thin.png"]]
    bad = ["truncated.jpg", "text.png", "bomb.png", "fifo.png", "folder", "missing"]
    mixed = [good[0], *[files[name] for name in bad[:3]], good[1], *[files[name] for name in bad[3:]], good[2]]
    alone = gdino_detect(*good, "--prompt", files["prompt"], "--json")
    assert alone.returncode == 0, alone.stderr
    together = gdino_detect(*mixed, "--prompt", files["prompt"], "--json", "--batch-size", "3")
    assert together.returncode == 3, together.stderr
    assert "Traceback" not in together.stderr
    records = {record["path"]: record for record in json.loads(together.stdout)["images"]}
    assert list(records) == [str(path) for path in mixed]
    for record in json.loads(alone.stdout)["images"]:
        assert records[record["path"]] == record
    assert len(records[str(good[0])]["detections"]) > 0
    errors = [line for line in together.stderr.splitlines() if line.startswith("gdino detect: error: ")]
    assert errors == [f"gdino detect: error: {files[name]}: {records[str(files[name])]['error']}" for name in bad]
    expected = {
        "truncated.jpg": "OpenCV cannot decode the 300-byte file",
        "text.png": "the 28-byte file is not in a format whose size can be checked before decoding",
        "bomb.png": "file is 12000x12000 = 144000000 pixels, more than the limit of 50000000 (see --max-pixels)",
        "fifo.png": "is a named pipe (FIFO), not an image file",
        "folder": "is a directory, not an image file",
        "missing": "no such file",
    }
    for name, words in expected.items():
        assert words in records[str(files[name])]["error"], name
    assert together.stderr.splitlines()[-1] == "gdino detect: 6 of 9 images refused"


def test_text_output_reports_each_image_and_refusal(files):
    result = gdino_detect(files["scene.png"], files["astronaut.jpg"], files["missing"], "--prompt", files["prompt"],
                          "--max-pixels", str(256 * 256))
    assert result.returncode == 3 and "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("weights: bundled crowd model") and lines[1].startswith(f"{files['scene.png']}: ")
    count = int(lines[1].split(": ")[1].split()[0])
    assert count > 0 and len(lines) == 2 + count
    assert result.stderr.splitlines()[-3:] == [
        f"gdino detect: error: {files['astronaut.jpg']}: file is 512x512 = 262144 pixels, more than the limit of "
        "65536 (see --max-pixels)",
        f"gdino detect: error: {files['missing']}: no such file",
        "gdino detect: 2 of 3 images refused",
    ]


def test_no_usable_input_at_all_is_a_usage_error_before_the_model_loads(files):
    result = gdino_detect(files["missing"], files["folder"], "--prompt", "a cat .")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (f"gdino detect: error: no input is an image file: {files['missing']}: no such "
                                     f"file; {files['folder']}: is a directory, not an image file")
