"""Camera messages -> RGB and objects -> vision_msgs, with real message classes and no ROS graph."""
from __future__ import annotations

import json
import re
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("sensor_msgs.msg", reason="ROS 2 message packages are installed by scripts/install_ros.sh")
import vision_msgs  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from nodes.detection_conversion import detection_array_msg, label_info_msg  # noqa: E402
from perception.camera_messages import (  # noqa: E402
    DEFAULT_MAX_PIXELS,
    BadStepError,
    CorruptCompressedImageError,
    DataSizeError,
    EmptyImageError,
    ImageTooLargeError,
    UnknownEncodingError,
    compressed_to_rgb,
    fill_image_msg,
    frame_seconds,
    image_to_rgb,
)
from perception.streams import LabeledBox  # noqa: E402


@pytest.fixture(scope="module")
def rgb() -> np.ndarray:
    generator = np.random.default_rng(0)
    return generator.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def image_msg(pixels: np.ndarray, encoding: str, padding: int = 0, bigendian: bool = False) -> Image:
    """Pack (H, W, C) pixels row by row with `padding` junk bytes after each row."""
    height, width = pixels.shape[:2]
    wire = pixels if pixels.dtype == np.uint8 else pixels.astype(">u2" if bigendian else "<u2")
    rows = np.ascontiguousarray(wire).reshape(height, -1).view(np.uint8)
    junk = np.full((height, padding), 0xAB, dtype=np.uint8)
    data = np.concatenate([rows, junk], axis=1)
    return Image(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=data.shape[1],
        data=data.tobytes(),
    )


@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize(
    "encoding, to_wire",
    [
        ("rgb8", lambda rgb: rgb),
        ("bgr8", lambda rgb: rgb[:, :, ::-1]),
        ("rgba8", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])),
        ("bgra8", lambda rgb: np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 7, np.uint8)])),
    ],
)
def test_colour_encodings_round_trip_exactly_with_row_padding(rgb, encoding, to_wire, padding):
    msg = image_msg(np.ascontiguousarray(to_wire(rgb)), encoding, padding=padding)
    result = image_to_rgb(msg)
    assert result.dtype == np.uint8 and result.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(result, rgb)


def test_mono8_becomes_grey_rgb(rgb):
    grey = rgb[:, :, 0]
    result = image_to_rgb(image_msg(grey[:, :, None].copy(), "mono8", padding=1))
    np.testing.assert_array_equal(result, np.dstack([grey] * 3))


@pytest.mark.parametrize("bigendian", [False, True])
def test_sixteen_bit_encodings_keep_the_top_byte_and_honour_endianness(rgb, bigendian):
    wide = rgb.astype(np.uint16) * 256 + 0x5A  # low byte is noise that must not leak in
    np.testing.assert_array_equal(image_to_rgb(image_msg(wide, "rgb16", padding=2, bigendian=bigendian)), rgb)
    np.testing.assert_array_equal(image_to_rgb(image_msg(wide[:, :, ::-1].copy(), "bgr16", bigendian=bigendian)), rgb)
    mono = image_to_rgb(image_msg(wide[:, :, :1].copy(), "mono16", bigendian=bigendian))
    np.testing.assert_array_equal(mono, np.dstack([rgb[:, :, 0]] * 3))


def _video_range_yuv(colour) -> tuple[int, int, int]:
    red, green, blue = colour
    luma = 16 + 0.257 * red + 0.504 * green + 0.098 * blue
    blue_diff = 128 - 0.148 * red - 0.291 * green + 0.439 * blue
    red_diff = 128 + 0.439 * red - 0.368 * green - 0.071 * blue
    return round(luma), round(blue_diff), round(red_diff)


@pytest.mark.parametrize("encoding, order", [("yuv422_yuy2", "YUYV"), ("yuyv", "YUYV"), ("yuv422", "UYVY"), ("uyvy", "UYVY")])
def test_packed_yuv422_decodes_to_the_colour(encoding, order):
    colour = (200, 40, 90)
    luma, blue_diff, red_diff = _video_range_yuv(colour)
    quad = {"YUYV": [luma, blue_diff, luma, red_diff], "UYVY": [blue_diff, luma, red_diff, luma]}[order]
    height, width = 4, 6
    packed = np.tile(np.array(quad, np.uint8), (height, width // 2)).reshape(height, width, 2)
    result = image_to_rgb(image_msg(packed, encoding, padding=4))
    assert result.shape == (height, width, 3)
    assert np.abs(result.astype(int) - colour).max() <= 3


@pytest.mark.parametrize(
    "encoding, pattern",
    [("bayer_rggb8", "RGGB"), ("bayer_bggr8", "BGGR"), ("bayer_gbrg8", "GBRG"), ("bayer_grbg8", "GRBG")],
)
def test_bayer_patterns_demosaic_to_the_colour(encoding, pattern):
    colour = dict(zip("RGB", (200, 40, 90)))
    mosaic = np.zeros((6, 8), np.uint8)
    for index, channel in enumerate(pattern):
        mosaic[index // 2 :: 2, index % 2 :: 2] = colour[channel]
    result = image_to_rgb(image_msg(mosaic[:, :, None].copy(), encoding))
    np.testing.assert_array_equal(result[2:4, 2:4], np.broadcast_to([200, 40, 90], (2, 2, 3)))


def test_compressed_png_is_exact_and_jpeg_is_close(rgb):
    large = cv2.resize(rgb, (64, 48), interpolation=cv2.INTER_NEAREST)
    bgr = cv2.cvtColor(large, cv2.COLOR_RGB2BGR)
    png = CompressedImage(format="png", data=cv2.imencode(".png", bgr)[1].tobytes())
    np.testing.assert_array_equal(compressed_to_rgb(png), large)
    flat = np.full((32, 32, 3), (30, 120, 220), np.uint8)
    jpeg = CompressedImage(format="rgb8; jpeg compressed bgr8", data=cv2.imencode(".jpg", flat[:, :, ::-1])[1].tobytes())
    assert np.abs(compressed_to_rgb(jpeg).astype(int) - flat).max() <= 4


@pytest.mark.parametrize(
    "change, error, words",
    [
        (dict(width=0), EmptyImageError, "zero size"),
        (dict(encoding="32FC1"), UnknownEncodingError, "32FC1"),
        (dict(step=20), BadStepError, "step 20"),
        (dict(data=bytes(104)), DataSizeError, "104 bytes"),
        (dict(data=bytes(106)), DataSizeError, "expected step * height = 21 * 5 = 105"),
    ],
)
def test_malformed_raw_images_raise_typed_errors(rgb, change, error, words):
    msg = image_msg(rgb, "rgb8")
    for field, value in change.items():
        setattr(msg, field, value)
    with pytest.raises(error, match=re.escape(words)):
        image_to_rgb(msg)


def test_malformed_compressed_images_raise_typed_errors():
    with pytest.raises(EmptyImageError):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b""))
    with pytest.raises(CorruptCompressedImageError, match="cannot decode"):
        compressed_to_rgb(CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0 not really a jpeg"))
    with pytest.raises(UnknownEncodingError, match="depth"):
        compressed_to_rgb(CompressedImage(format="16UC1; compressedDepth png", data=b"\x00" * 16))


def png_bomb(width: int, height: int) -> bytes:
    """A valid all-black RGB PNG of width x height, built row by row: a few hundred KB that decode to
    3 * width * height bytes."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    compressor = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0, then black pixels
    pixels = b"".join([compressor.compress(row) for _ in range(height)] + [compressor.flush()])
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_png_bomb_is_refused_from_its_header_without_decoding():
    # The bomb: 420 KB of PNG declaring 12000x12000 (432 MB of BGR once decoded). The peak
    # resident size of a fresh process must not move by more than a few MB while it is refused.
    script = textwrap.dedent(f"""
        import resource, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from sensor_msgs.msg import CompressedImage
        from perception.camera_messages import ImageTooLargeError, compressed_to_rgb
        from test_conversions import png_bomb
        msg = CompressedImage(format="png", data=png_bomb(12000, 12000))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            compressed_to_rgb(msg)
        except ImageTooLargeError as error:
            print(error.kind, error)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
    refusal, growth_mb = result.stdout.strip().splitlines()
    assert refusal == "too_large png image is 12000x12000 = 144000000 pixels, more than the limit of 50000000"
    assert int(growth_mb) < 20, f"peak RSS grew by {growth_mb} MB"


def test_an_image_at_the_pixel_limit_decodes_and_one_pixel_more_is_refused():
    png = CompressedImage(format="png", data=png_bomb(3, 2))
    np.testing.assert_array_equal(compressed_to_rgb(png, max_pixels=6), np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ImageTooLargeError, match="3x2 = 6 pixels, more than the limit of 5"):
        compressed_to_rgb(png, max_pixels=5)
    raw = image_msg(np.zeros((2, 3, 3), np.uint8), "rgb8")
    assert image_to_rgb(raw, max_pixels=6).shape == (2, 3, 3)
    with pytest.raises(ImageTooLargeError, match="3x2"):
        image_to_rgb(raw, max_pixels=5)
    assert DEFAULT_MAX_PIXELS == 50_000_000 and ImageTooLargeError.kind == "too_large"


@pytest.mark.parametrize("extension, params", [
    (".png", []), (".jpg", []), (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]), (".tiff", []),
    (".tiff", [cv2.IMWRITE_TIFF_COMPRESSION, 1]), (".webp", []), (".webp", [cv2.IMWRITE_WEBP_QUALITY, 101]),
    (".bmp", []), (".ppm", []),
])
def test_every_format_read_from_its_header_decodes_as_opencv_does_and_honours_the_limit(rgb, extension, params):
    image = cv2.resize(rgb, (53, 37), interpolation=cv2.INTER_NEAREST)
    encoded = cv2.imencode(extension, image[:, :, ::-1], params)[1]
    msg = CompressedImage(format=extension[1:], data=encoded.tobytes())
    expected = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(compressed_to_rgb(msg, max_pixels=53 * 37), expected)
    with pytest.raises(ImageTooLargeError, match="53x37"):
        compressed_to_rgb(msg, max_pixels=53 * 37 - 1)


def test_formats_whose_size_cannot_be_read_first_and_broken_headers_are_refused(rgb):
    hdr = CompressedImage(format="hdr", data=cv2.imencode(".hdr", rgb)[1].tobytes())
    with pytest.raises(UnknownEncodingError, match="PNG, JPEG, TIFF, WebP, BMP, PNM"):
        compressed_to_rgb(hdr)
    png = png_bomb(4, 4)
    with pytest.raises(CorruptCompressedImageError, match="cut short"):
        compressed_to_rgb(CompressedImage(format="png", data=png[:20]))
    with pytest.raises(EmptyImageError, match="0x4"):
        compressed_to_rgb(CompressedImage(format="png", data=png[:16] + bytes(4) + png[20:]))


def test_yuv_with_odd_width_is_rejected():
    with pytest.raises(BadStepError, match="even"):
        image_to_rgb(image_msg(np.zeros((2, 3, 2), np.uint8), "yuyv"))


def test_fill_image_msg_round_trips(rgb):
    msg = Image()
    fill_image_msg(msg, rgb)
    assert (msg.encoding, msg.step, msg.height, msg.width) == ("rgb8", 21, 5, 7)
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)
    with pytest.raises(ValueError, match="uint8 RGB"):
        fill_image_msg(msg, rgb[:, :, 0])


def test_detection_array_carries_header_phrase_score_pixel_box_and_track_id():
    header = Header(frame_id="camera_left")
    header.stamp.sec, header.stamp.nanosec = 12, 345
    objects = [
        LabeledBox("a red mug", 0.75, np.array([10.0, 20.0, 50.0, 100.0], np.float32), "7"),
        LabeledBox("person", 0.5, np.array([0.5, 1.5, 2.5, 4.5], np.float32), ""),
    ]
    msg = detection_array_msg(header, objects)
    assert msg.header == header and len(msg.detections) == 2
    first, second = msg.detections
    assert first.header == header
    assert len(first.results) == 1
    assert first.results[0].hypothesis.class_id == "a red mug"
    assert first.results[0].hypothesis.score == pytest.approx(0.75)
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (30.0, 60.0)
    assert (first.bbox.size_x, first.bbox.size_y, first.bbox.center.theta) == (40.0, 80.0, 0.0)
    assert first.id == "7" and second.id == ""
    assert (second.bbox.center.position.x, second.bbox.size_y) == (1.5, 3.0)
    assert len(detection_array_msg(header, []).detections) == 0


def test_label_info_lists_the_phrases_in_prompt_order():
    msg = label_info_msg(Header(), ["a person", "a red mug"], 0.35)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, "a person"), (1, "a red mug")]
    assert msg.threshold == pytest.approx(0.35)


def test_generated_vision_msgs_have_the_upstream_type_hash():
    # The upstream vision_msgs 4.x build's RIHS01 hash of Detection2DArray (it covers every nested
    # type): equal hashes are what lets our detections reach nodes built against upstream.
    prefix = Path(vision_msgs.__file__).parents[4]  # <prefix>/lib/pythonX.Y/site-packages/vision_msgs
    share = prefix / "share" / "vision_msgs"
    description = json.loads((share / "msg" / "Detection2DArray.json").read_text())
    hashes = {entry["type_name"]: entry["hash_string"] for entry in description["type_hashes"]}
    assert hashes["vision_msgs/msg/Detection2DArray"] == (
        "RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968"
    )


def test_a_frame_is_timed_by_its_stamp_or_else_when_it_was_received():
    """For the camera's tracker (the node passes the arrival time, `gdino bag` the time the bag recorded it): an
    unstamped frame was timed one frame at the tracker's frame_rate after the last, whatever time had passed."""
    from perception.bags.messages import bag_typestore

    stamped = Header()
    stamped.stamp.sec, stamped.stamp.nanosec = 1_700_000_000, 500_000_000
    assert frame_seconds(stamped, 7.0) == 1_700_000_000.5 and frame_seconds(Header(), 7.0) == 7.0
    types = bag_typestore().types  # a header as read from a bag
    unstamped = types["std_msgs/msg/Header"](stamp=types["builtin_interfaces/msg/Time"](sec=0, nanosec=0), frame_id="")
    assert frame_seconds(unstamped, 12.25) == 12.25
