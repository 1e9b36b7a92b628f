"""What `gdino label` reads (paths, globs, manifests into typed inputs) and the mistakes it refuses before any
model or Ray instance starts: exit code 2 and one line."""
from __future__ import annotations

import pytest

from perception.cli.main import main
from perception.labeling.inputs import LabelInput, LabelInputError, expand_inputs
from perception.labeling.summary import InputRecord, skippable


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "rec" / "day1").mkdir(parents=True)
    for name in ("rec/day1/a.mp4", "rec/day1/b.mkv", "rec/c.mp4"):
        (tmp_path / name).write_bytes(b"video bytes")
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "metadata.yaml").write_text("rosbag2_bagfile_information: {}\n")
    (tmp_path / "loose.mcap").write_bytes(b"mcap")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "x.PNG").write_bytes(b"png")
    (tmp_path / "empty").mkdir()
    return tmp_path


def test_paths_globs_and_manifests_become_typed_inputs_once_each(tree):
    (tree / "list.txt").write_text("# recordings\nrec/c.mp4\n\nbag  # the bag\nphotos\n")
    found = expand_inputs([str(tree / "rec/**/*.mp4"), str(tree / "list.txt"), str(tree / "loose.mcap"),
                           str(tree / "rec" / "day1" / ".." / "c.mp4")])
    assert [(item.kind, item.path[len(str(tree)) + 1:]) for item in found] == [
        ("video", "rec/c.mp4"), ("video", "rec/day1/a.mp4"), ("bag", "bag"), ("images", "photos"), ("bag", "loose.mcap")]
    keys = [item.key for item in found]
    assert len(set(keys)) == len(keys) and keys[0].startswith("c-")


@pytest.mark.parametrize("argument, message", [
    ("missing.mp4", "no such file or folder"),
    ("rec/*.avi", "the pattern matches nothing"),
    ("empty", "holds no bag and no image file"),
    ("blank.txt", "names no input"),
    ("nested.txt", "a manifest may not name another manifest"),
])
def test_inputs_that_name_nothing_are_refused(tree, monkeypatch, argument, message):
    (tree / "blank.txt").write_text("# nothing\n")
    (tree / "nested.txt").write_text("blank.txt\n")
    monkeypatch.chdir(tree)
    with pytest.raises(LabelInputError, match=message):
        expand_inputs([argument])


def test_usage_errors_are_one_line_and_exit_2_before_anything_runs(tree, capsys):
    video = str(tree / "rec" / "c.mp4")
    cases = [
        ([str(tree / "missing.mp4"), "--output", str(tree / "out")], "no such file or folder"),
        ([video, "--output", str(tree / "no" / "out")], "does not exist"),
        ([video, "--output", str(tree / "loose.mcap")], "is not a folder"),
        ([video, "--output", str(tree / "out"), "--yolo"], "add --jpeg"),
        ([video, "--output", str(tree / "out"), "--every", "0"], "--every must be >= 1"),
        ([video, "--output", str(tree / "out"), "--chunk-seconds", "1", "--chunk-overlap", "2"], "--chunk-seconds"),
    ]
    for arguments, message in cases:
        assert main(["label", *arguments, "--prompt", "a cat ."]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gdino label: error:") and message in lines[0], lines
    assert not (tree / "out").exists()


def test_a_rerun_skips_only_an_unchanged_input_done_with_the_same_settings(tree):
    item = LabelInput(str(tree / "rec" / "c.mp4"), "video")
    (tree / "inputs" / item.key).mkdir(parents=True)
    size, mtime = item.fingerprint()
    done = InputRecord(item.path, "video", item.key, size, mtime, "hash", "done", outputs=f"inputs/{item.key}")
    assert skippable(done, item, (size, mtime), "hash", tree)
    assert not skippable(done, item, (size, mtime + 1), "hash", tree)  # touched since
    assert not skippable(done, item, (size + 1, mtime), "hash", tree)  # rewritten
    assert not skippable(done, item, (size, mtime), "other", tree)  # other settings
    failed = InputRecord(**{**done.__dict__, "outcome": "failed"})
    assert not skippable(failed, item, (size, mtime), "hash", tree)
    (tree / "inputs" / item.key).rmdir()
    assert not skippable(done, item, (size, mtime), "hash", tree)  # its outputs are gone
