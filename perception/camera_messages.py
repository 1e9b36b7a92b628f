"""Camera messages to RGB arrays and back, and the camera topic conventions, as pure functions.

Shared by the ROS node (rclpy messages) and ``gdino bag`` (rosbags messages): inputs are duck-typed
``sensor_msgs/Image`` and ``sensor_msgs/CompressedImage`` messages, anything with their fields. No ROS
import here. Outputs are (H, W, 3) uint8 RGB arrays, C-contiguous. Every malformed message raises a
subclass of :class:`MalformedImageError` whose ``kind`` names the problem, so a node can log each kind
once and skip the message.

Images over ``max_pixels`` are refused before any pixel is converted or decoded: a compressed image's size
comes from its header (:mod:`perception.image_header`), and a compressed format whose header is not read
there is refused, because decoding it blind could allocate whatever the file declares. OpenCV has a limit
of its own (``OPENCV_IO_MAX_IMAGE_PIXELS``, 2**30 pixels by default, read once when cv2 loads); a larger
``max_pixels`` than that cannot let bigger images through.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from perception.image_header import HEADER_FORMATS, ImageHeaderError, encoded_size

# Images with more pixels are refused. Generous for cameras (8K UHD is 33 MP); a 12000x12000 PNG bomb
# of 420 KB would otherwise decode to 432 MB of BGR, plus the RGB copy.
DEFAULT_MAX_PIXELS = 50_000_000


class MalformedImageError(ValueError):
    """A camera message that cannot be turned into an image; ``kind`` groups errors for logging."""

    kind = "malformed"


class EmptyImageError(MalformedImageError):
    kind = "zero_size"


class UnknownEncodingError(MalformedImageError):
    kind = "unknown_encoding"


class DepthImageError(UnknownEncodingError):
    """A depth image (16UC1, 32FC1, compressedDepth): a valid message, but not a camera picture."""

    kind = "depth"


# sensor_msgs/image_encodings' depth encodings (millimetres as 16UC1, metres as 32FC1).
DEPTH_ENCODINGS = ("16UC1", "32FC1")


class BadStepError(MalformedImageError):
    kind = "wrong_step"


class DataSizeError(MalformedImageError):
    kind = "data_size"


class CorruptCompressedImageError(MalformedImageError):
    kind = "corrupt_compressed"


class ImageTooLargeError(MalformedImageError):
    kind = "too_large"


def _check_pixel_count(width: int, height: int, max_pixels: int, what: str = "image") -> None:
    """Raise ImageTooLargeError when width x height passes max_pixels."""
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{what} is {width}x{height} = {width * height} pixels, more than the limit of {max_pixels}"
        )


@dataclass(frozen=True)
class _Layout:
    """How one raw encoding stores a pixel: channels, bytes per channel, and how to reach RGB."""

    channels: int
    channel_bytes: int
    to_rgb: int | None  # cv2 colour conversion code; None when the channels already are R, G, B


_LAYOUTS = {
    "rgb8": _Layout(3, 1, None),
    "bgr8": _Layout(3, 1, cv2.COLOR_BGR2RGB),
    "rgba8": _Layout(4, 1, cv2.COLOR_RGBA2RGB),
    "bgra8": _Layout(4, 1, cv2.COLOR_BGRA2RGB),
    "mono8": _Layout(1, 1, cv2.COLOR_GRAY2RGB),
    "rgb16": _Layout(3, 2, None),
    "bgr16": _Layout(3, 2, cv2.COLOR_BGR2RGB),
    "rgba16": _Layout(4, 2, cv2.COLOR_RGBA2RGB),
    "bgra16": _Layout(4, 2, cv2.COLOR_BGRA2RGB),
    "mono16": _Layout(1, 2, cv2.COLOR_GRAY2RGB),
    # Packed 4:2:2, two bytes per pixel; ROS "yuv422" is UYVY byte order, "yuv422_yuy2" is YUYV.
    "yuv422": _Layout(2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": _Layout(2, 1, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": _Layout(2, 1, cv2.COLOR_YUV2RGB_YUYV),
    "yuyv": _Layout(2, 1, cv2.COLOR_YUV2RGB_YUYV),
    # OpenCV names a Bayer pattern after the second row's first two pixels, so ROS rggb is cv2 BG.
    "bayer_rggb8": _Layout(1, 1, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": _Layout(1, 1, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": _Layout(1, 1, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": _Layout(1, 1, cv2.COLOR_BayerGB2RGB),
}

SUPPORTED_ENCODINGS = tuple(sorted(_LAYOUTS))


def image_to_rgb(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``sensor_msgs/Image`` -> (H, W, 3) uint8 RGB; more than ``max_pixels`` raises ImageTooLargeError.

    Rows may be padded (``step`` > width * bytes per pixel). 16-bit encodings honour ``is_bigendian``
    and keep their top 8 bits (value >> 8), as a linear scaling of the full 16-bit range.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise EmptyImageError(f"image has zero size ({width}x{height})")
    _check_pixel_count(width, height, max_pixels)
    layout = _LAYOUTS.get(msg.encoding)
    if msg.encoding in DEPTH_ENCODINGS:
        raise DepthImageError(f"{msg.encoding} is a depth encoding, not a camera image")
    if layout is None:
        raise UnknownEncodingError(
            f"unsupported image encoding {msg.encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}"
        )
    if msg.encoding.startswith(("yuv", "uyvy", "yuyv")) and width % 2:
        raise BadStepError(f"{msg.encoding} packs pixel pairs, so the width must be even; got {width}")
    dtype = np.dtype(np.uint8) if layout.channel_bytes == 1 else np.dtype(">u2" if msg.is_bigendian else "<u2")
    pixels = _pixel_view(msg, layout.channels, dtype)
    if layout.channel_bytes == 2:
        pixels = (pixels >> 8).astype(np.uint8)
    if layout.to_rgb is None:
        return pixels.copy()  # owned and writable: the message's buffer may be read-only or reused
    source = pixels if layout.channels > 1 else pixels[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(source), layout.to_rgb)


def _pixel_view(msg, channels: int, dtype: np.dtype) -> np.ndarray:
    """A strided (H, W, channels) view of a raw message's data that skips the row padding without
    copying; BadStepError / DataSizeError when ``step`` or the data's length do not fit the size."""
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise BadStepError(f"step {step} is smaller than one row of {width} {msg.encoding} pixels ({row_bytes} bytes)")
    data = memoryview(msg.data).cast("B")
    if len(data) != step * height:
        raise DataSizeError(
            f"data has {len(data)} bytes, expected step * height = {step} * {height} = {step * height}"
        )
    return np.ndarray((height, width, channels), dtype=dtype, buffer=data,
                      strides=(step, channels * dtype.itemsize, dtype.itemsize))


def depth_image(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A depth ``sensor_msgs/Image`` (16UC1 or 32FC1, either byte order) -> a new (H, W) array in the
    message's own unit and native byte order (uint16 millimetres or float32 metres; see
    perception.spatial.depth_in_metres). Raises a MalformedImageError subclass like image_to_rgb."""
    height, width = int(msg.height), int(msg.width)
    if height <= 0 or width <= 0:
        raise EmptyImageError(f"depth image has zero size ({width}x{height})")
    _check_pixel_count(width, height, max_pixels, "depth image")
    if msg.encoding not in DEPTH_ENCODINGS:
        raise UnknownEncodingError(f"depth encoding must be one of {', '.join(DEPTH_ENCODINGS)}; got {msg.encoding!r}")
    dtype = np.dtype(np.uint16 if msg.encoding == "16UC1" else np.float32).newbyteorder(">" if msg.is_bigendian else "<")
    return _pixel_view(msg, 1, dtype)[:, :, 0].astype(dtype.newbyteorder("="))


def compressed_to_rgb(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` -> (H, W, 3) uint8 RGB; see :func:`decode_rgb` for formats and limits."""
    if "compresseddepth" in msg.format.lower().replace(" ", ""):
        raise DepthImageError(f"compressed depth images are not camera images (format {msg.format!r})")
    return decode_rgb(memoryview(msg.data).cast("B"), max_pixels, f"{msg.format or 'compressed'} image")


def decode_rgb(data, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "compressed image") -> np.ndarray:
    """Encoded image bytes (any buffer) -> (H, W, 3) uint8 RGB, refused before decoding when the header
    declares more than ``max_pixels``. Formats: those :mod:`perception.image_header` reads (PNG, JPEG, TIFF,
    WebP, BMP, PNM); others raise UnknownEncodingError. ``what`` names the data in messages."""
    data = np.frombuffer(data, dtype=np.uint8)
    if data.size == 0:
        raise EmptyImageError(f"{what} has no data")
    try:
        size = encoded_size(data)
    except ImageHeaderError as error:
        raise CorruptCompressedImageError(f"cannot decode the {data.size}-byte {what}: {error}") from error
    if size is None:
        raise UnknownEncodingError(
            f"the {data.size}-byte {what} is not in a format whose size can be checked before decoding "
            f"({', '.join(HEADER_FORMATS)})"
        )
    if 0 in size:
        raise EmptyImageError(f"{what} header declares zero size ({size[0]}x{size[1]})")
    _check_pixel_count(*size, max_pixels, what)
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as error:  # e.g. OpenCV's own pixel limit, when max_pixels is set above it
        raise CorruptCompressedImageError(f"OpenCV cannot decode the {data.size}-byte {what}: "
                                          f"{str(error).strip().splitlines()[-1]}") from error
    if bgr is None:
        raise CorruptCompressedImageError(f"OpenCV cannot decode the {data.size}-byte {what}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb8_fields(rgb: np.ndarray) -> dict:
    """The ``sensor_msgs/Image`` fields (all but the header) of an (H, W, 3) uint8 RGB array as rgb8
    without row padding; ``data`` is a flat uint8 array."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 RGB array; got {rgb.dtype} {rgb.shape}")
    return {
        "height": int(rgb.shape[0]),
        "width": int(rgb.shape[1]),
        "encoding": "rgb8",
        "is_bigendian": 0,
        "step": int(rgb.shape[1] * 3),
        "data": np.ascontiguousarray(rgb).reshape(-1),
    }


def fill_image_msg(msg, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB array into an rclpy ``sensor_msgs/Image`` (the caller sets the header).

    ``bytes`` is handed to the message because rclpy converts a numpy array element by element (tens
    of milliseconds per VGA frame).
    """
    for name, value in rgb8_fields(rgb).items():
        setattr(msg, name, value.tobytes() if name == "data" else value)


COMPRESSED_SUFFIX = "/compressed"


def stamp_seconds(header) -> float | None:
    """A ``std_msgs/Header``'s stamp in seconds; None for a zero stamp (the publisher set none)."""
    stamp = header.stamp
    if not (stamp.sec or stamp.nanosec):
        return None
    return stamp.sec + stamp.nanosec * 1e-9


def frame_seconds(header, received: float) -> float:
    """When a frame was taken, in seconds, for its camera's tracker: the header's stamp, or for a frame without one
    (a zero stamp) ``received``, when it reached us (the node's arrival time, a bag's record time), so that the
    tracker still counts the time between two of the frames its detector takes
    (ObjectTracker.update_at_detector_pace); timed one frame at the tracker's frame_rate apart, unstamped frames
    looked like a 10 fps camera."""
    stamp = stamp_seconds(header)
    return received if stamp is None else stamp


def is_compressed(camera_topic: str) -> bool:
    """A camera topic ending in /compressed carries ``sensor_msgs/CompressedImage``."""
    return camera_topic.endswith(COMPRESSED_SUFFIX)


def detections_topic(camera_topic: str) -> str:
    """``/robot/front/image_raw`` (or ``.../image_raw/compressed``) -> ``/robot/front/detections``."""
    base = camera_topic.removesuffix(COMPRESSED_SUFFIX)
    namespace = base.rsplit("/", 1)[0]
    return f"{namespace}/detections"
