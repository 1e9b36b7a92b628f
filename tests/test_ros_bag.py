"""`gdino bag` on bags written here with rosbags (both storages), read back with rosbags.

The model is random:tiny: these tests check what the command promises about the bag (topics, types,
timestamps, headers, labels from the prompt, pixel boxes, track ids, annotated images, skipped
malformed messages), not what is detected.
"""
from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from perception.camera_messages import rgb8_fields
from perception.bags.messages import bag_typestore
from perception.cli.main import main

HEIGHT, WIDTH, FRAMES = 48, 64, 4
UPSTREAM_DETECTION2DARRAY_HASH = "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968"
MODEL_ARGS = ["--weights", "random:tiny", "--box-threshold", "0", "--text-threshold", "0",
              "--shortest-edge", "64", "--longest-edge", "96", "--batch-size", "3"]


def frame(index: int) -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    cv2.rectangle(image, (10 + index, 8), (40 + index, 30), (250, 30, 30), -1)
    return image


def header(typestore, index: int, frame_id: str):
    types = typestore.types
    return types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=100 + index, nanosec=7),
                                        frame_id=frame_id)


def write_input_bag(path, storage: StoragePlugin) -> dict[str, list[int]]:
    """Raw rgb8 on /cam_a, PNG on /cam_b, a String topic, and one truncated image on /cam_a."""
    typestore = bag_typestore()
    types = typestore.types
    timestamps = {"/cam_a/image_raw": [], "/cam_b/image_raw/compressed": []}
    with Writer(path, version=9, storage_plugin=storage) as writer:
        raw = writer.add_connection("/cam_a/image_raw", "sensor_msgs/msg/Image", typestore=typestore)
        packed = writer.add_connection("/cam_b/image_raw/compressed", "sensor_msgs/msg/CompressedImage", typestore=typestore)
        text = writer.add_connection("/chatter", "std_msgs/msg/String", typestore=typestore)
        for index in range(FRAMES):
            stamp = 10**9 * (100 + index)
            image = types["sensor_msgs/msg/Image"](header=header(typestore, index, "cam_a"), **rgb8_fields(frame(index)))
            writer.write(raw, stamp, typestore.serialize_cdr(image, "sensor_msgs/msg/Image"))
            timestamps["/cam_a/image_raw"].append(stamp)
            png = np.frombuffer(cv2.imencode(".png", frame(index)[:, :, ::-1])[1].tobytes(), np.uint8)
            compressed = types["sensor_msgs/msg/CompressedImage"](header=header(typestore, index, "cam_b"), format="png", data=png)
            writer.write(packed, stamp + 5, typestore.serialize_cdr(compressed, "sensor_msgs/msg/CompressedImage"))
            timestamps["/cam_b/image_raw/compressed"].append(stamp + 5)
            writer.write(text, stamp + 9, typestore.serialize_cdr(types["std_msgs/msg/String"](data="hi"), "std_msgs/msg/String"))
        truncated = types["sensor_msgs/msg/Image"](header=header(typestore, 99, "cam_a"),
                                                   **{**rgb8_fields(frame(0)), "data": np.zeros(10, np.uint8)})
        writer.write(raw, 10**9 * 200, typestore.serialize_cdr(truncated, "sensor_msgs/msg/Image"))
    return timestamps


def read_bag(path) -> dict[str, list]:
    messages: dict[str, list] = {}
    with AnyReader([path], default_typestore=bag_typestore()) as reader:
        for connection, timestamp, raw in reader.messages():
            messages.setdefault(connection.topic, []).append(
                (timestamp, connection.msgtype, reader.deserialize(raw, connection.msgtype))
            )
    return messages


def test_our_vision_msgs_definitions_have_the_upstream_type_hash():
    assert bag_typestore().hash_rihs01("vision_msgs/msg/Detection2DArray") == UPSTREAM_DETECTION2DARRAY_HASH


@pytest.mark.parametrize("storage", [StoragePlugin.MCAP, StoragePlugin.SQLITE3])
def test_bag_detections_keep_timestamps_and_headers(tmp_path, capsys, storage):
    timestamps = write_input_bag(tmp_path / "in", storage)
    output = tmp_path / "out"
    storage_name = "mcap" if storage == StoragePlugin.MCAP else "sqlite3"
    code = main(["bag", str(tmp_path / "in"), "--output", str(output), "--prompt", "a red box . a dog .",
                 "--annotate", "--storage", storage_name, "--json", *MODEL_ARGS])
    summary = json.loads(capsys.readouterr().out)
    assert code == 3  # a malformed message was skipped, and the exit code says so (EXIT_DAMAGED_INPUT)
    assert summary["malformed"] == {"data_size": 1}
    assert summary["frames"] == {"/cam_a/image_raw": FRAMES, "/cam_b/image_raw/compressed": FRAMES}
    assert summary["phrases"] == ["a red box", "a dog"]

    messages = read_bag(output)
    assert set(messages) == {"/cam_a/detections", "/cam_b/detections", "/cam_a/detections/image", "/cam_b/detections/image"}
    for camera, out_topic in (("/cam_a/image_raw", "/cam_a/detections"), ("/cam_b/image_raw/compressed", "/cam_b/detections")):
        records = messages[out_topic]
        assert [timestamp for timestamp, _, _ in records] == timestamps[camera]
        ids_per_frame = []
        for index, (_, msgtype, msg) in enumerate(records):
            assert msgtype == "vision_msgs/msg/Detection2DArray"
            assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (100 + index, 7)
            assert msg.header.frame_id == camera.split("/")[1]
            ids_per_frame.append(sorted(d.id for d in msg.detections))
            for detection in msg.detections:
                assert detection.results[0].hypothesis.class_id in ("a red box", "a dog")
                assert 0 <= detection.bbox.center.position.x - detection.bbox.size_x / 2 + 1e-3
                assert detection.bbox.center.position.x + detection.bbox.size_x / 2 <= WIDTH + 1e-3
        # Track ids: the tracker reports confirmed tracks after its initialization delay, with digit ids.
        assert any(ids_per_frame) and all(i.isdigit() for ids in ids_per_frame for i in ids)
        images = messages[out_topic + "/image"]
        assert [timestamp for timestamp, _, _ in images] == timestamps[camera]
        assert all((m.height, m.width, m.encoding) == (HEIGHT, WIDTH, "rgb8") for _, _, m in images)


def test_bag_errors_are_one_line(tmp_path, capsys):
    write_input_bag(tmp_path / "in", StoragePlugin.MCAP)
    (tmp_path / "taken").mkdir()
    (tmp_path / "folder").mkdir()
    os.mkfifo(tmp_path / "fifo.mcap")
    cases = [
        ([str(tmp_path / "in"), "--output", str(tmp_path / "taken")], "already exists"),
        ([str(tmp_path / "in"), "--output", str(tmp_path / "no" / "out")], f"the folder {tmp_path / 'no'} does not exist"),
        ([str(tmp_path / "missing"), "--output", str(tmp_path / "o")], "input not found"),
        ([str(tmp_path / "folder"), "--output", str(tmp_path / "o")], "is a folder but no rosbag2 bag"),
        ([str(tmp_path / "fifo.mcap"), "--output", str(tmp_path / "o")], "is neither a bag folder nor a file"),
        ([str(tmp_path / "in"), "--output", str(tmp_path / "o"), "--topics", "/chatter"], "not image topics of this bag: /chatter"),
    ]
    for args, message in cases:
        assert main(["bag", *args, "--prompt", "a dog .", *MODEL_ARGS]) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("gdino bag: error: ") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.mcap", "folder", "in", "taken"]  # nothing written
