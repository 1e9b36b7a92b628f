"""The pixel size of compressed image data read from its header, without decoding a single pixel.

A decoder allocates the whole image the header declares, so a few hundred kilobytes of PNG can ask for
gigabytes (a decompression bomb). Reading width and height first lets a caller refuse such an image
before any decoder runs. Formats read: PNG, JPEG, TIFF (and BigTIFF), WebP, BMP and PNM (P1-P6), which
cover what ``compressed_image_transport`` writes (jpeg, png, tiff) and the common still-image files.
"""
from __future__ import annotations

import re
import struct

HEADER_FORMATS = ("PNG", "JPEG", "TIFF", "WebP", "BMP", "PNM")

# JPEG start-of-frame markers (baseline, progressive, lossless, arithmetic...): not DHT, JPG or DAC.
_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_JPEG_START_OF_SCAN = 0xDA
# Markers without a length field: TEM, RST0-7 (SOI and EOI cannot appear before the frame header).
_JPEG_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_PNM_TOKEN = re.compile(rb"(?:\s|#[^\n]*\n?)*(\d+)")
_PNM_HEADER_BYTES = 4096  # room for comment lines before the width and height


class ImageHeaderError(ValueError):
    """The data starts like a known format, but its header is cut short or inconsistent."""


def encoded_size(data) -> tuple[int, int] | None:
    """(width, height) declared by the header of encoded image ``data`` (bytes, memoryview or uint8 array);
    None for a format not read here. Nothing is copied but the first bytes of a PNM header.

    Raises ImageHeaderError when the format is recognised but its header is truncated or malformed.
    """
    view = memoryview(data).cast("B")
    start = bytes(view[:16])
    try:
        if start.startswith(b"\x89PNG\r\n\x1a\n"):
            return _png_size(view)
        if start.startswith(b"\xff\xd8"):
            return _jpeg_size(view)
        if start[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
            return _tiff_size(view)
        if start[:4] == b"RIFF" and start[8:12] == b"WEBP":
            return _webp_size(view)
        if start[:2] == b"BM":
            return _bmp_size(view)
        if re.match(rb"P[1-6]", start):
            return _pnm_size(bytes(view[:_PNM_HEADER_BYTES]))
    except (struct.error, IndexError) as error:
        raise ImageHeaderError(f"the image header is cut short ({error})") from error
    return None


def _png_size(data: memoryview) -> tuple[int, int]:
    length, kind, width, height = struct.unpack_from(">I4sII", data, 8)
    if kind != b"IHDR" or length != 13:
        raise ImageHeaderError("a PNG must start with its 13-byte IHDR chunk")
    return width, height


def _jpeg_size(data: memoryview) -> tuple[int, int]:
    position = 2
    while True:
        if data[position] != 0xFF:
            raise ImageHeaderError(f"JPEG marker expected at byte {position}")
        while data[position] == 0xFF:  # any number of fill bytes may precede a marker
            position += 1
        marker = data[position]
        position += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in _JPEG_SOF:
            height, width = struct.unpack_from(">HH", data, position + 3)  # after length and precision
            return width, height
        if marker == _JPEG_START_OF_SCAN:
            raise ImageHeaderError("JPEG scan data before any frame header (SOF)")
        position += struct.unpack_from(">H", data, position)[0]


def _tiff_size(data: memoryview) -> tuple[int, int]:
    order = "<" if data[0] == ord("I") else ">"
    big = bytes(data[2:4]) in (b"+\x00", b"\x00+")
    # Classic TIFF: 4-byte IFD offset, 2-byte entry count, 12-byte entries with a 4-byte value field.
    # BigTIFF: 8-byte offset, 8-byte count, 20-byte entries with an 8-byte value field.
    offset_format, count_format, entry_size = ("Q", "Q", 20) if big else ("I", "H", 12)
    (offset,) = struct.unpack_from(order + offset_format, data, 8 if big else 4)
    (entries,) = struct.unpack_from(order + count_format, data, offset)
    position = offset + struct.calcsize(count_format)
    value_formats = {3: "H", 4: "I", 16: "Q"}  # SHORT, LONG, LONG8
    sizes = {}
    for index in range(min(entries, 4096)):
        tag, kind = struct.unpack_from(order + "HH", data, position + index * entry_size)
        if tag in (256, 257) and kind in value_formats:  # ImageWidth, ImageLength
            value_at = position + index * entry_size + (12 if big else 8)
            sizes[tag] = struct.unpack_from(order + value_formats[kind], data, value_at)[0]
    if set(sizes) != {256, 257}:
        raise ImageHeaderError("the first TIFF directory gives no ImageWidth and ImageLength")
    return sizes[256], sizes[257]


def _webp_size(data: memoryview) -> tuple[int, int]:
    chunk = bytes(data[12:16])
    if chunk == b"VP8 ":  # lossy: 3-byte frame tag, start code, then 14-bit width and height
        if bytes(data[23:26]) != b"\x9d\x01\x2a":
            raise ImageHeaderError("WebP VP8 frame without its start code")
        width, height = struct.unpack_from("<HH", data, 26)
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: signature byte, then width-1 and height-1 in 14 bits each
        (bits,) = struct.unpack_from("<I", data, 21)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit canvas width-1 and height-1 after 4 bytes of flags
        low_width, high_width, low_height, high_height = struct.unpack_from("<HBHB", data, 24)
        return low_width + (high_width << 16) + 1, low_height + (high_height << 16) + 1
    raise ImageHeaderError(f"unknown WebP chunk {chunk!r}")


def _bmp_size(data: memoryview) -> tuple[int, int]:
    (header_size,) = struct.unpack_from("<I", data, 14)
    if header_size == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack_from("<HH", data, 18)
    width, height = struct.unpack_from("<ii", data, 18)
    return abs(width), abs(height)  # a negative height stores the rows top-down


def _pnm_size(data: bytes) -> tuple[int, int]:
    sizes, position = [], 2
    for _ in range(2):
        match = _PNM_TOKEN.match(data, position)
        if match is None:
            raise ImageHeaderError("a PNM header needs a width and a height after its magic number")
        sizes.append(int(match.group(1)))
        position = match.end()
    return sizes[0], sizes[1]
