"""sensor_msgs <-> numpy glue: what cv_bridge and sensor_msgs_py would do here.

Why our own: neither installs from PyPI, and the nodes must run on the PyPI ROS wheels.
Conventions follow them so that, on a full ROS install, ``cv_bridge`` and
``sensor_msgs_py.point_cloud2.read_points_numpy`` read what we publish:

- Image: ``step = width * bytes_per_pixel``, ``is_bigendian = 0`` (16-bit data written
  little-endian); on input ``step`` row padding and ``is_bigendian`` are honoured.
- CompressedImage: format ``"rgb8; jpeg compressed bgr8"`` (image_transport's form; cv_bridge
  ignores format and just decodes).
- PointCloud2: ``cloud_schema``'s all-FLOAT32 packed layout, ``height = 1``,
  ``row_step = width * point_step``.

Message data is always set as ``array.array('B')``: rclpy's setter checks any other
sequence element by element, which takes seconds for a camera frame.
"""
from __future__ import annotations

import array
import zlib
from typing import Dict, Optional, Tuple

import cv2
import numpy as np

try:  # strict JPEG decoding; without it (a ROS install missing the wheel) cv2 decodes leniently
    import simplejpeg
except ImportError:  # pragma: no cover - the pinned environment has it
    simplejpeg = None
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from ..core import cloud_schema


class ImageConversionError(ValueError):
    """A message that cannot be turned into an RGB frame (or an array into a message)."""


# encoding -> (channels, numpy dtype (little-endian), cv2 code to RGB or None)
_DECODE = {
    'rgb8': (3, 'u1', None),
    'bgr8': (3, 'u1', cv2.COLOR_BGR2RGB),
    'rgba8': (4, 'u1', cv2.COLOR_RGBA2RGB),
    'bgra8': (4, 'u1', cv2.COLOR_BGRA2RGB),
    'mono8': (1, 'u1', cv2.COLOR_GRAY2RGB),
    '8UC1': (1, 'u1', cv2.COLOR_GRAY2RGB),
    'mono16': (1, 'u2', cv2.COLOR_GRAY2RGB),
    '16UC1': (1, 'u2', cv2.COLOR_GRAY2RGB),
    'yuv422': (2, 'u1', cv2.COLOR_YUV2RGB_UYVY),  # ROS's yuv422 is UYVY
    'uyvy': (2, 'u1', cv2.COLOR_YUV2RGB_UYVY),
    'yuv422_yuy2': (2, 'u1', cv2.COLOR_YUV2RGB_YUY2),
    'yuyv': (2, 'u1', cv2.COLOR_YUV2RGB_YUY2),
    'rgb16': (3, 'u2', None),
    'bgr16': (3, 'u2', cv2.COLOR_BGR2RGB),
    'rgba16': (4, 'u2', cv2.COLOR_RGBA2RGB),
    'bgra16': (4, 'u2', cv2.COLOR_BGRA2RGB),
}
# Raw Bayer mosaics (machine-vision cameras), demosaiced as cv_bridge does. ROS names the
# top-left 2x2 block row by row; OpenCV names it one row lower, hence rggb -> BayerBG.
for _pattern, _code in (('rggb', cv2.COLOR_BayerBG2RGB), ('bggr', cv2.COLOR_BayerRG2RGB),
                        ('gbrg', cv2.COLOR_BayerGR2RGB), ('grbg', cv2.COLOR_BayerGB2RGB)):
    _DECODE[f'bayer_{_pattern}8'] = (1, 'u1', _code)
    _DECODE[f'bayer_{_pattern}16'] = (1, 'u2', _code)
# encodings numpy_to_image writes: encoding -> (channels, dtype)
_ENCODE = {'rgb8': (3, np.uint8), 'bgr8': (3, np.uint8), 'rgba8': (4, np.uint8),
           'bgra8': (4, np.uint8), 'mono8': (1, np.uint8), 'mono16': (1, np.uint16)}
_CV_EXT = {'jpeg': '.jpg', 'jpg': '.jpg', 'png': '.png'}


def _byte_array(data) -> np.ndarray:
    """Message ``data`` (array.array, bytes, numpy from rosbags, list) -> flat uint8 view."""
    if isinstance(data, np.ndarray):
        return data.reshape(-1).view(np.uint8) if data.dtype.itemsize == 1 else \
            np.frombuffer(data.tobytes(), np.uint8)
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _to_msg_bytes(buf) -> array.array:
    """bytes or a C-contiguous array -> array('B'), copying once."""
    out = array.array('B')
    out.frombytes(memoryview(buf).cast('B') if isinstance(buf, np.ndarray) else buf)
    return out


def image_to_numpy(msg: Image, desired: str = 'rgb8') -> np.ndarray:
    """sensor_msgs/Image -> (H, W, 3) uint8 array in ``desired`` order ('rgb8' or 'bgr8').

    16-bit images are scaled by 1/256 (the full 16-bit range onto 8 bits) rather than
    clipped: a pose detector needs a visible image. Bayer mosaics are demosaiced. The
    result never aliases ``msg.data``.
    """
    if desired not in ('rgb8', 'bgr8'):
        raise ImageConversionError(f"desired encoding must be 'rgb8' or 'bgr8', not {desired!r}")
    enc = msg.encoding
    if enc not in _DECODE:
        raise ImageConversionError(f'unsupported image encoding {enc!r}; supported: '
                                   f'{", ".join(sorted(_DECODE))}')
    channels, kind, code = _DECODE[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    if h == 0 or w == 0:
        raise ImageConversionError(f'empty image ({w}x{h})')
    if enc in ('yuv422', 'uyvy', 'yuv422_yuy2', 'yuyv') and w % 2:
        raise ImageConversionError(f'{enc} needs an even width, got {w}')
    dtype = np.dtype(kind).newbyteorder('>' if msg.is_bigendian else '<')
    row_bytes = w * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageConversionError(f'step {step} is smaller than width {w} x {channels} '
                                   f'channel(s) x {dtype.itemsize} byte(s) = {row_bytes}')
    buf = _byte_array(msg.data)
    if buf.size < step * h:
        raise ImageConversionError(f'image data truncated: {buf.size} bytes, expected '
                                   f'step {step} x height {h} = {step * h}')
    if buf.size != step * h:
        raise ImageConversionError(f'image data has {buf.size} bytes, inconsistent with '
                                   f'step {step} x height {h} = {step * h}')
    rows = np.ascontiguousarray(buf.reshape(h, step)[:, :row_bytes])
    img = rows.view(dtype).reshape(h, w, channels)
    if dtype.itemsize == 2:
        img = (img.astype(np.uint16) >> 8).astype(np.uint8)
    img = img[..., 0] if channels == 1 else img
    rgb = img.copy() if code is None else cv2.cvtColor(np.ascontiguousarray(img), code)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if desired == 'bgr8' else rgb


def numpy_to_image(arr: np.ndarray, encoding: str = 'rgb8',
                   header: Optional[Header] = None) -> Image:
    """Array -> sensor_msgs/Image, stored as is and labelled ``encoding`` (cv2_to_imgmsg)."""
    if encoding not in _ENCODE:
        raise ImageConversionError(f'cannot write encoding {encoding!r}; supported: '
                                   f'{", ".join(sorted(_ENCODE))}')
    channels, dtype = _ENCODE[encoding]
    arr = np.asarray(arr)
    if channels == 1 and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    want = 2 if channels == 1 else 3
    if arr.ndim != want or (channels > 1 and arr.shape[2] != channels):
        raise ImageConversionError(f'{encoding} needs an array of shape (H, W'
                                   f'{"" if channels == 1 else f", {channels}"}), '
                                   f'got {arr.shape}')
    if arr.dtype != dtype:
        raise ImageConversionError(f'{encoding} needs dtype {np.dtype(dtype).name}, '
                                   f'got {arr.dtype}')
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageConversionError(f'empty image {arr.shape}')
    arr = np.ascontiguousarray(arr, dtype=np.dtype(dtype).newbyteorder('<'))
    msg = Image()
    msg.header = header if header is not None else Header()
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = msg.width * channels * arr.itemsize
    msg.data = _to_msg_bytes(arr)
    return msg


MAX_DECODED_PIXELS = 100_000_000  # a 100 MP frame is no camera's; a forged header is refused
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


# Formats cv2.imdecode would also take, by their first bytes: refused by name. A WebP
# labelled 'jpeg' declaring 12000x12000 took pose2d from 370 MB to 1.19 GB for 2.5 s.
_OTHER_FORMATS = ((b'RIFF', 'WebP (RIFF)'), (b'II*\x00', 'TIFF'), (b'MM\x00*', 'TIFF'),
                  (b'\x00\x00\x00\x0cjP  ', 'JPEG 2000'), (b'\xff\x4f\xff\x51', 'JPEG 2000'),
                  (b'\x76\x2f\x31\x01', 'OpenEXR'), (b'BM', 'BMP'), (b'GIF8', 'GIF'),
                  (b'#?RADIANCE', 'Radiance HDR'), (b'#?RGBE', 'Radiance HDR'),
                  (b'\x59\xa6\x6a\x95', 'Sun raster'), (b'PF', 'PFM'), (b'Pf', 'PFM'))
# The most pixels one byte of a camera's compressed frame can stand for. Huffman-coded JPEG
# needs at least a bit per 8x8 block (a DC code; baseline also an end-of-block code): at most
# 512 pixels a byte (a black 4000x3000 frame, optimised: 255); deflate compresses at most
# 1032:1 (a black 8-bit PNG: 1021 pixels a byte). Twice those: a 629-byte JPEG claiming
# 10000x9999 is refused from its header, before the decoder allocates 300 MB for it.
JPEG_MAX_PIXELS_PER_BYTE = 1024
DEFLATE_MAX_RATIO = 2064
# JPEG frame types accepted: Huffman baseline, extended and progressive (what cameras and
# encoders write). Arithmetic-coded, lossless and hierarchical JPEG are refused: no camera
# sends them, and arithmetic coding defeats the bound above.
_JPEG_SOF_OK = {0xC0: 'baseline', 0xC1: 'extended', 0xC2: 'progressive'}


def _image_kind(buf: np.ndarray) -> str:
    """'jpeg' or 'png' from the first bytes, else ImageConversionError naming what it is."""
    head = buf[:16].tobytes()
    if head[:3] == b'\xff\xd8\xff':
        return 'jpeg'
    if head[:8] == PNG_SIGNATURE:
        return 'png'
    what = next((name for magic, name in _OTHER_FORMATS if head.startswith(magic)), None)
    if what is None and len(head) >= 2 and head[:1] == b'P' and head[1:2] in b'1234567':
        what = 'PxM (netpbm)'
    return what or 'unknown'


def _jpeg_frame(buf: np.ndarray) -> Tuple[int, int, int]:
    """(width, height, SOF marker) from a JPEG's frame header, walking the markers before it
    (cheap: no entropy-coded data comes before the frame header)."""
    data, pos, n = buf, 2, buf.size
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            raise ImageConversionError(f'corrupt JPEG header, no marker at byte {pos}')
        marker = int(data[pos + 1])
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = (int(data[pos + 2]) << 8) | int(data[pos + 3])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if pos + 9 > n or length < 8:
                break
            h = (int(data[pos + 5]) << 8) | int(data[pos + 6])
            w = (int(data[pos + 7]) << 8) | int(data[pos + 8])
            return w, h, marker
        if marker in (0xDA, 0xD9) or length < 2:
            break
        pos += 2 + length
    raise ImageConversionError(f'corrupt JPEG header, no frame header (SOF) in its first '
                               f'{min(pos, n)} bytes')


def _png_raw_bytes(buf: np.ndarray, w: int, h: int) -> int:
    """Bytes of filtered scanlines a w x h PNG inflates to (IHDR bit depth and colour type)."""
    depth, colour = int(buf[24]), int(buf[25])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour, 1)
    return h * (1 + (w * channels * max(1, depth) + 7) // 8)


def _compressed_size(buf: np.ndarray) -> Optional[Tuple[int, int]]:
    """(width, height) from a JPEG or PNG header without decoding, None if unknown.

    Refuses (ImageConversionError) a header claiming more pixels than the data can hold
    (see JPEG_MAX_PIXELS_PER_BYTE, DEFLATE_MAX_RATIO) or a JPEG frame type no camera sends."""
    head = buf[:33].tobytes()
    if head[:8] == PNG_SIGNATURE and len(head) >= 26:
        w, h = int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')
        if w * h <= MAX_DECODED_PIXELS and _png_raw_bytes(buf, w, h) > DEFLATE_MAX_RATIO * buf.size:
            raise ImageConversionError(f'compressed image claims {w}x{h} pixels in only '
                                       f'{buf.size} bytes (more than deflate can compress): '
                                       'a forged or damaged PNG header, refused')
        return w, h
    if head[:2] == b'\xff\xd8':
        w, h, sof = _jpeg_frame(buf)
        if sof not in _JPEG_SOF_OK:
            raise ImageConversionError(f'JPEG frame type 0x{sof:02X} (arithmetic-coded, lossless '
                                       'or hierarchical) is not accepted: only baseline, '
                                       'extended and progressive Huffman JPEG')
        if w * h == 0:
            raise ImageConversionError(f'corrupt JPEG header, frame size {w}x{h}')
        if w * h <= MAX_DECODED_PIXELS and w * h > JPEG_MAX_PIXELS_PER_BYTE * buf.size:
            raise ImageConversionError(f'compressed image claims {w}x{h} pixels in only '
                                       f'{buf.size} bytes (at most {JPEG_MAX_PIXELS_PER_BYTE} '
                                       'pixels a byte in a Huffman JPEG): a forged or damaged '
                                       'JPEG header, refused')
        return w, h
    return None


def _check_png(buf: np.ndarray) -> None:
    """Refuse a PNG that is cut off or whose critical chunks fail their CRC, before libpng
    sees it: libpng refuses it too, but prints every error to stderr (once per frame, past
    the node's rate-limited log). A chunk walk and CRCs cost about 1% of the decode."""
    data, pos, n = memoryview(buf), len(PNG_SIGNATURE), buf.size
    while True:
        if pos + 12 > n:
            raise ImageConversionError(f'corrupt PNG: cut off after {n} bytes (no IEND chunk)')
        length = int.from_bytes(data[pos:pos + 4], 'big')
        end = pos + 12 + length
        if end > n:
            raise ImageConversionError(f'corrupt PNG: cut off after {n} bytes (a chunk at byte '
                                       f'{pos} needs {end})')
        kind = bytes(data[pos + 4:pos + 8])
        stored_crc = int.from_bytes(data[end - 4:end], 'big')
        # Ancillary chunks (lower-case initial): libpng drops a damaged one itself.
        if kind[:1].isupper() and zlib.crc32(data[pos + 4:end - 4]) != stored_crc:
            raise ImageConversionError(f'corrupt PNG: CRC mismatch in its {kind.decode("latin-1")}'
                                       f' chunk at byte {pos}')
        if kind == b'IEND':
            return
        pos = end


def compressed_to_numpy(msg: CompressedImage, desired: str = 'rgb8') -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png) -> (H, W, 3) uint8 RGB (or BGR).

    JPEG is decoded strictly (libjpeg-turbo via simplejpeg): libjpeg itself "decodes" a
    frame whose data is cut off or damaged in transport into grey or garbage rows and only
    prints a warning, and a pose estimated on that would be published as if it were real.
    PNG is checked (chunks, CRCs) before decoding, so a damaged one is refused quietly.
    """
    if desired not in ('rgb8', 'bgr8'):
        raise ImageConversionError(f"desired encoding must be 'rgb8' or 'bgr8', not {desired!r}")
    if 'compressedDepth' in (msg.format or ''):
        raise ImageConversionError(f'compressedDepth images are not supported ({msg.format!r})')
    buf = _byte_array(msg.data)
    if buf.size == 0:
        raise ImageConversionError('compressed image has no data')
    kind = _image_kind(buf)
    if kind not in ('jpeg', 'png'):
        raise ImageConversionError(
            f'cannot decode compressed image (format {msg.format!r}, {buf.size} bytes): its data '
            f'is {"not an image format known here" if kind == "unknown" else kind}, and only '
            'JPEG and PNG (what CompressedImage carries for cameras) are accepted')
    size = _compressed_size(buf)
    if size is not None and size[0] * size[1] > MAX_DECODED_PIXELS:
        raise ImageConversionError(f'compressed image claims {size[0]}x{size[1]} pixels, more '
                                   f'than {MAX_DECODED_PIXELS // 1_000_000} MP: refused')
    if buf[:2].tobytes() == b'\xff\xd8' and simplejpeg is not None:
        try:
            return simplejpeg.decode_jpeg(buf, colorspace=desired[:3].upper(), strict=True)
        except ValueError as e:
            raise ImageConversionError(f'corrupt JPEG, {e} ({buf.size} bytes)') from e
    if buf[:8].tobytes() == PNG_SIGNATURE:
        _check_png(buf)
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageConversionError(f'cannot decode compressed image (format {msg.format!r}, '
                                   f'{buf.size} bytes): corrupt or not jpeg/png')
    return bgr if desired == 'bgr8' else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def numpy_to_compressed(arr_rgb: np.ndarray, fmt: str = 'jpeg', header: Optional[Header] = None,
                        jpeg_quality: int = 90) -> CompressedImage:
    """(H, W, 3) uint8 RGB -> sensor_msgs/CompressedImage (jpeg or png)."""
    if fmt not in _CV_EXT:
        raise ImageConversionError(f"compressed format must be 'jpeg' or 'png', not {fmt!r}")
    arr = np.asarray(arr_rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or 0 in arr.shape:
        raise ImageConversionError(f'need a non-empty (H, W, 3) uint8 RGB array, got '
                                   f'{arr.shape} {arr.dtype}')
    fmt = 'jpeg' if fmt == 'jpg' else fmt
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == 'jpeg' else []
    ok, enc = cv2.imencode(_CV_EXT[fmt], cv2.cvtColor(arr, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise ImageConversionError(f'OpenCV failed to encode {fmt}')
    msg = CompressedImage()
    msg.header = header if header is not None else Header()
    msg.format = f'rgb8; {fmt} compressed bgr8'
    msg.data = _to_msg_bytes(enc)
    return msg


def keypoints_to_cloud(header: Optional[Header], points: np.ndarray, confidence: np.ndarray,
                       person_ids=None) -> PointCloud2:
    """(P, J, D) keypoints + (P, J) confidences -> PointCloud2 in the cloud_schema layout."""
    body = cloud_schema.build(points, confidence, person_ids)
    msg = PointCloud2()
    msg.header = header if header is not None else Header()
    msg.height, msg.width = 1, body.width
    msg.fields = [PointField(name=n, offset=o, datatype=PointField.FLOAT32, count=1)
                  for n, o in body.fields]
    msg.is_bigendian = False
    msg.point_step = body.point_step
    msg.row_step = body.row_step
    msg.is_dense = True
    msg.data = _to_msg_bytes(body.data)
    return msg


# Points a keypoint/skeleton cloud may have unless a caller says otherwise: 100 persons of
# 33 joints. Work per message must be bounded by something a frame can hold.
MAX_CLOUD_POINTS = 100 * 33


def cloud_to_keypoints(msg: PointCloud2, num_joints: int = 17,
                       max_points: Optional[int] = MAX_CLOUD_POINTS,
                       max_persons: int = None) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """PointCloud2 -> {person_id: (positions (J, D), confidence (J,))}.

    Joints a person lacks come back as NaN positions with confidence 0. ``max_points``:
    a cloud with more points is refused before its payload is read (one large message must
    not stall every camera one executor serves; None: no limit); ``max_persons``: only the
    most confident that many persons are unpacked (see :func:`cloud_schema.unpack`).
    """
    names = [f.name for f in msg.fields]
    dups = sorted({n for n in names if names.count(n) > 1})
    if dups:  # the dict below would keep the last, the unpacker read the first
        raise ValueError(f'cloud has duplicated fields {dups}: refused (fields {names})')
    fields = {f.name: f for f in msg.fields}
    dims = 3 if 'z' in fields else 2
    needed = cloud_schema.layout_for(dims).names
    missing = [n for n in needed if n not in fields]
    if missing:
        raise ValueError(f'cloud lacks fields {missing} (has {list(fields)})')
    step = int(msg.point_step)
    for n in needed:
        f = fields[n]
        if f.datatype != PointField.FLOAT32 or f.count != 1:
            raise ValueError(f'field {n!r} must be one FLOAT32 ({PointField.FLOAT32}), '
                             f'got datatype {f.datatype} count {f.count}')
        if f.offset + 4 > step:
            raise ValueError(f'field {n!r} at offset {f.offset} does not fit point_step {step}')
    if msg.is_bigendian:
        raise ValueError('big-endian point clouds are not supported')
    h, w, row_step = int(msg.height), int(msg.width), int(msg.row_step)
    if max_points is not None and h * w > max_points:
        raise ValueError(f'cloud of {h * w} points refused: more than {max_points} (more '
                         'persons than any frame holds)')
    if row_step < w * step:
        raise ValueError(f'row_step {row_step} < width {w} x point_step {step}')
    buf = _byte_array(msg.data)
    if buf.size < h * row_step:
        raise ValueError(f'cloud payload too short: {buf.size} bytes, expected height {h} x '
                         f'row_step {row_step} = {h * row_step}')
    if buf.size != h * row_step:
        raise ValueError(f'cloud payload has {buf.size} bytes, inconsistent with height {h} '
                         f'x row_step {row_step} = {h * row_step} (wrong point count?)')
    if h * w == 0:
        return {}
    payload = buf if h == 1 and row_step == w * step else \
        buf.reshape(h, row_step)[:, :w * step].tobytes()
    return cloud_schema.unpack(payload, [f.name for f in msg.fields],
                               [f.offset for f in msg.fields], step, h * w, num_joints,
                               max_persons)
