"""ros_conversions: image/cloud round trips, cv_bridge/sensor_msgs_py conventions, errors."""
import array

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image, PointCloud2, PointField
from std_msgs.msg import Header

from vp3d_ros.core import cloud_schema
from vp3d_ros.nodes.ros_conversions import (ImageConversionError, cloud_to_keypoints,
                                      compressed_to_numpy, image_to_numpy,
                                      keypoints_to_cloud, numpy_to_compressed, numpy_to_image)

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def _header():
    h = Header()
    h.frame_id = 'cam'
    h.stamp.sec, h.stamp.nanosec = 12, 345
    return h


def _raw(encoding, h, w, step, payload, bigendian=0):
    """A hand-built Image (what a foreign driver might publish)."""
    msg = Image()
    msg.height, msg.width, msg.step, msg.encoding = h, w, step, encoding
    msg.is_bigendian = bigendian
    msg.data = array.array('B', bytes(payload))
    return msg


@pytest.mark.parametrize('encoding, make, expect', [
    ('rgb8', lambda: RGB, lambda: RGB),
    ('bgr8', lambda: RGB[..., ::-1], lambda: RGB),
    ('rgba8', lambda: np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)]), lambda: RGB),
    ('bgra8', lambda: np.dstack([RGB[..., ::-1], np.zeros(RGB.shape[:2], np.uint8)]),
     lambda: RGB),
    ('mono8', lambda: RGB[..., 0], lambda: np.repeat(RGB[..., :1], 3, axis=2)),
    ('mono16', lambda: RGB[..., 0].astype(np.uint16) * 256 + 77,
     lambda: np.repeat(RGB[..., :1], 3, axis=2)),
])
def test_image_round_trip(encoding, make, expect):
    arr = make()
    msg = numpy_to_image(arr, encoding, header=_header())
    channels = 1 if arr.ndim == 2 else arr.shape[2]
    assert (msg.height, msg.width, msg.encoding, msg.is_bigendian) == (5, 7, encoding, 0)
    assert msg.step == 7 * channels * arr.itemsize  # cv2_to_imgmsg: no padding
    assert len(msg.data) == msg.step * msg.height
    assert msg.header.frame_id == 'cam' and msg.header.stamp.nanosec == 345
    out = image_to_numpy(msg)
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expect())
    np.testing.assert_array_equal(image_to_numpy(msg, 'bgr8'), expect()[..., ::-1])


@pytest.mark.parametrize('encoding, channels', [('rgb8', 3), ('bgr8', 3), ('rgba8', 4),
                                                ('bgra8', 4), ('mono8', 1)])
def test_padded_step_is_honoured(encoding, channels):
    h, w, pad = 4, 5, 3
    pix = RNG.integers(0, 256, (h, w, channels), dtype=np.uint8)
    rows = np.concatenate([pix.reshape(h, w * channels), np.full((h, pad), 0xAB, np.uint8)], 1)
    out = image_to_numpy(_raw(encoding, h, w, w * channels + pad, rows.tobytes()))
    if channels == 1:
        pix = np.repeat(pix, 3, axis=2)
    elif encoding.startswith('bgr'):
        pix = pix[..., 2::-1]
    np.testing.assert_array_equal(out, pix[..., :3])


@pytest.mark.parametrize('bigendian', [0, 1])
def test_mono16_endianness_and_padding(bigendian):
    vals = np.array([[0, 256, 0xFFFF], [0x1234, 0x8000, 511]], np.uint16)
    rows = vals.astype('>u2' if bigendian else '<u2').view(np.uint8).reshape(2, 6)
    rows = np.concatenate([rows, np.zeros((2, 2), np.uint8)], axis=1)  # step 8
    for enc in ('mono16', '16UC1'):
        out = image_to_numpy(_raw(enc, 2, 3, 8, rows.tobytes(), bigendian))
        np.testing.assert_array_equal(out[..., 0], vals >> 8)
        assert np.all(out == out[..., :1])


def test_yuv422_grey_ramp():
    y = np.array([[16, 60, 120, 235]], np.uint8)
    uyvy = np.stack([np.full_like(y, 128), y], axis=-1).reshape(1, 8)  # U Y V Y ...
    yuy2 = np.stack([y, np.full_like(y, 128)], axis=-1).reshape(1, 8)  # Y U Y V ...
    for enc, data in (('yuv422', uyvy), ('yuv422_yuy2', yuy2)):
        out = image_to_numpy(_raw(enc, 1, 4, 8, data.tobytes())).astype(int)
        assert np.all(out == out[..., :1]) and np.all(np.diff(out[0, :, 0]) > 0)


@pytest.mark.parametrize('bits', [8, 16])
@pytest.mark.parametrize('pattern', ['rggb', 'bggr', 'gbrg', 'grbg'])
def test_bayer_mosaics_are_demosaiced_in_their_pattern(pattern, bits):
    """A raw Bayer frame (FLIR/Basler drivers publish these): each pixel keeps the channel
    its 2x2 pattern names (row by row from the top left); demosaicing restores the colours
    of flat regions, which a wrong pattern turns into other colours."""
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :12], rgb[:, 12:] = (200, 40, 10), (10, 60, 220)
    mosaic = np.zeros((16, 24), np.uint16 if bits == 16 else np.uint8)
    for k, (dy, dx) in enumerate([(0, 0), (0, 1), (1, 0), (1, 1)]):
        values = rgb[dy::2, dx::2, 'rgb'.index(pattern[k])].astype(mosaic.dtype)
        mosaic[dy::2, dx::2] = values * 257 if bits == 16 else values
    msg = _raw(f'bayer_{pattern}{bits}', 16, 24, 24 * bits // 8,
               mosaic.astype(mosaic.dtype.newbyteorder('<')).tobytes())
    out = image_to_numpy(msg)
    assert out.shape == (16, 24, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[4:-4, 3:9], rgb[4:-4, 3:9])
    np.testing.assert_array_equal(out[4:-4, 15:21], rgb[4:-4, 15:21])
    np.testing.assert_array_equal(image_to_numpy(msg, 'bgr8'), out[..., ::-1])


@pytest.mark.parametrize('encoding, order, alpha', [('rgb16', 'rgb', False),
                                                    ('bgr16', 'bgr', False),
                                                    ('rgba16', 'rgb', True),
                                                    ('bgra16', 'bgr', True)])
def test_16_bit_colour_is_scaled_to_8_bits(encoding, order, alpha):
    wide = RGB.astype(np.uint16) * 257  # 8-bit v spread over 16 bits: v * 257
    wide = wide[..., ::-1] if order == 'bgr' else wide
    if alpha:
        wide = np.dstack([wide, np.full(RGB.shape[:2], 65535, np.uint16)])
    channels = wide.shape[2]
    for big in (0, 1):
        data = wide.astype('>u2' if big else '<u2').tobytes()
        out = image_to_numpy(_raw(encoding, 5, 7, 7 * channels * 2, data, bigendian=big))
        np.testing.assert_array_equal(out, RGB)


def test_data_as_bytes_or_numpy_like_rosbags():
    msg = numpy_to_image(RGB, 'rgb8')
    for data in (bytes(msg.data), np.frombuffer(bytes(msg.data), np.uint8)):
        fake = type('Msg', (), dict(height=5, width=7, step=21, encoding='rgb8',
                                    is_bigendian=0, data=data))()
        out = image_to_numpy(fake)
        np.testing.assert_array_equal(out, RGB)
        out[0, 0] = 0  # writable and not aliasing the message
    assert bytes(msg.data) == RGB.tobytes()


@pytest.mark.parametrize('msg, words', [
    (_raw('nv21', 2, 2, 2, b'\0' * 4), 'unsupported image encoding'),
    (_raw('rgb8', 0, 4, 12, b''), 'empty image'),
    (_raw('rgb8', 3, 0, 0, b''), 'empty image'),
    (_raw('rgb8', 2, 4, 10, b'\0' * 20), 'step 10 is smaller'),
    (_raw('rgb8', 2, 4, 12, b'\0' * 23), 'truncated'),
    (_raw('rgb8', 2, 4, 12, b''), 'truncated'),
    (_raw('rgb8', 2, 4, 12, b'\0' * 30), 'inconsistent'),
    (_raw('mono16', 2, 4, 4, b'\0' * 8), 'step 4 is smaller'),
    (_raw('yuv422', 1, 3, 6, b'\0' * 6), 'even width'),
])
def test_image_errors(msg, words):
    with pytest.raises(ImageConversionError, match=words):
        image_to_numpy(msg)
    assert issubclass(ImageConversionError, ValueError)


def test_image_bad_arguments():
    with pytest.raises(ImageConversionError, match='desired'):
        image_to_numpy(numpy_to_image(RGB), desired='mono8')
    with pytest.raises(ImageConversionError, match='cannot write encoding'):
        numpy_to_image(RGB, '32FC1')
    with pytest.raises(ImageConversionError, match='shape'):
        numpy_to_image(RGB, 'mono8')
    with pytest.raises(ImageConversionError, match='shape'):
        numpy_to_image(RGB[..., :2], 'rgb8')
    with pytest.raises(ImageConversionError, match='dtype'):
        numpy_to_image(RGB.astype(np.float32), 'rgb8')
    with pytest.raises(ImageConversionError, match='empty'):
        numpy_to_image(np.zeros((0, 4, 3), np.uint8))


def test_compressed_round_trip():
    smooth = cv2.resize(RGB, (64, 48), interpolation=cv2.INTER_LINEAR)
    png = numpy_to_compressed(smooth, 'png', header=_header())
    assert isinstance(png, CompressedImage) and png.header.frame_id == 'cam'
    assert png.format == 'rgb8; png compressed bgr8'
    np.testing.assert_array_equal(compressed_to_numpy(png), smooth)
    np.testing.assert_array_equal(compressed_to_numpy(png, 'bgr8'), smooth[..., ::-1])
    jpg = numpy_to_compressed(smooth, 'jpeg', jpeg_quality=95)
    assert bytes(jpg.data[:2]) == b'\xff\xd8' and 'jpeg' in jpg.format
    err = np.abs(compressed_to_numpy(jpg).astype(int) - smooth).mean()
    assert err < 8  # colours not swapped (a swap gives ~ 60)


def test_compressed_errors():
    msg = CompressedImage()
    msg.format = 'jpeg'
    with pytest.raises(ImageConversionError, match='no data'):
        compressed_to_numpy(msg)
    good = numpy_to_compressed(RGB, 'jpeg')
    msg.data = array.array('B', bytes(good.data[:40]) + b'garbage' * 10)
    with pytest.raises(ImageConversionError, match='corrupt JPEG'):
        compressed_to_numpy(msg)
    # Damaged in the middle (start and end intact), cut off, or padded after its end marker
    # (MJPEG drivers pad buffers): libjpeg alone would return garbage for the first two.
    data = bytes(good.data)
    mid = len(data) // 2
    msg.data = array.array('B', data[:mid] + bytes(range(256)) * 8 + data[mid + 2048:])
    with pytest.raises(ImageConversionError, match='corrupt JPEG'):
        compressed_to_numpy(msg)
    msg.data = array.array('B', data[:mid])
    with pytest.raises(ImageConversionError, match='corrupt JPEG'):
        compressed_to_numpy(msg)
    msg.data = array.array('B', data + bytes(100))
    assert compressed_to_numpy(msg).shape == RGB.shape
    gray = numpy_to_compressed(RGB, 'jpeg')
    ok, enc = cv2.imencode('.jpg', RGB[..., 0])
    gray.data = array.array('B', enc.tobytes())
    assert compressed_to_numpy(gray).shape == RGB.shape  # grey JPEG -> 3 channels
    ok, enc = cv2.imencode('.png', np.zeros((4, 4), np.uint8))
    forged = bytearray(enc.tobytes())
    forged[16:24] = (100_000).to_bytes(4, 'big') * 2  # IHDR says 100000 x 100000
    msg.data = array.array('B', bytes(forged))
    with pytest.raises(ImageConversionError, match='MP: refused'):
        compressed_to_numpy(msg)
    msg.data = array.array('B', b'not an image at all')
    with pytest.raises(ImageConversionError, match='cannot decode'):
        compressed_to_numpy(msg)
    good.format = '16UC1; compressedDepth png'
    with pytest.raises(ImageConversionError, match='compressedDepth'):
        compressed_to_numpy(good)
    with pytest.raises(ImageConversionError, match='format'):
        numpy_to_compressed(RGB, 'bmp')
    with pytest.raises(ImageConversionError, match='uint8 RGB'):
        numpy_to_compressed(RGB[..., 0], 'png')


def test_damaged_png_is_refused_before_libpng_prints(capfd):
    """A PNG cut off or damaged in transport is refused with what is wrong, and libpng
    (which writes its errors to stderr, once per frame) never sees it. Intact PNGs, also
    with bytes after IEND or a damaged ancillary chunk (libpng drops it), decode."""
    data = bytes(numpy_to_compressed(RGB, 'png').data)
    msg = CompressedImage(format='png')
    cases = [('cut off after', data[:len(data) // 2]), ('cut off after', data[:40]),
             ('CRC mismatch in its IDAT chunk', data[:60] + bytes([data[60] ^ 0xFF]) + data[61:])]
    for words, damaged in cases:
        msg.data = array.array('B', damaged)
        with pytest.raises(ImageConversionError, match=words):
            compressed_to_numpy(msg)
    assert 'libpng' not in capfd.readouterr().err
    text = b'tEXt' + b'Comment\x00camera 3'  # an ancillary chunk with a wrong CRC
    chunk = (len(text) - 4).to_bytes(4, 'big') + text + b'\0\0\0\0'
    for fine in (data + bytes(64), data[:33] + chunk + data[33:]):
        msg.data = array.array('B', fine)
        np.testing.assert_array_equal(compressed_to_numpy(msg), RGB)


# --- PointCloud2 -------------------------------------------------------------------------

def _structured_decode(msg):
    """Independent reader, as sensor_msgs_py.read_points does: structured dtype on the bytes."""
    dtype = np.dtype({'names': [f.name for f in msg.fields],
                      'formats': ['<f4' for _ in msg.fields],
                      'offsets': [f.offset for f in msg.fields],
                      'itemsize': msg.point_step})
    pts = np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)
    return np.stack([pts[n] for n in dtype.names], axis=-1)  # structured_to_unstructured


@pytest.mark.parametrize('dims', [2, 3])
def test_cloud_round_trip_and_layout(dims):
    pts = RNG.normal(size=(2, 17, dims)) * 100
    conf = RNG.uniform(size=(2, 17))
    msg = keypoints_to_cloud(_header(), pts, conf, person_ids=[4, 9])
    names = cloud_schema.layout_for(dims).names
    assert [f.name for f in msg.fields] == list(names)
    assert [f.offset for f in msg.fields] == [4 * i for i in range(len(names))]
    assert all(f.datatype == PointField.FLOAT32 and f.count == 1 for f in msg.fields)
    assert (msg.height, msg.width, msg.point_step) == (1, 34, 4 * len(names))
    assert msg.row_step == msg.point_step * msg.width == len(msg.data)
    assert msg.is_dense and not msg.is_bigendian and msg.header.frame_id == 'cam'

    table = _structured_decode(msg)  # (P*J, fields): person-major, joint-minor
    np.testing.assert_allclose(table[:, :dims], pts.reshape(-1, dims), rtol=1e-6)
    np.testing.assert_allclose(table[:, dims], conf.reshape(-1), rtol=1e-6)
    np.testing.assert_array_equal(table[:, dims + 1], np.tile(np.arange(17), 2))
    np.testing.assert_array_equal(table[:, dims + 2], np.repeat([4, 9], 17))

    out = cloud_to_keypoints(msg)
    assert sorted(out) == [4, 9]
    for k, pid in enumerate((4, 9)):
        np.testing.assert_allclose(out[pid][0], pts[k], rtol=1e-6)
        np.testing.assert_allclose(out[pid][1], conf[k], rtol=1e-6)


def test_cloud_empty_and_single_person():
    empty = keypoints_to_cloud(None, np.zeros((0, 17, 3)), np.zeros((0, 17)))
    assert (empty.width, empty.height, empty.row_step, len(empty.data)) == (0, 1, 0, 0)
    assert [f.name for f in empty.fields] == list(cloud_schema.FIELDS_3D)
    assert cloud_to_keypoints(empty) == {}
    assert _structured_decode(empty).shape == (0, 6)
    one = keypoints_to_cloud(None, np.ones((17, 2)), np.ones(17))  # (J, D): one person
    assert list(cloud_to_keypoints(one)) == [0]


def test_cloud_foreign_layout_and_row_padding():
    """A cloud from elsewhere: fields reordered, extra field, padded rows, missing joint."""
    names = ['person', 'joint', 'pad', 'confidence', 'y', 'x']
    rows = []
    for r in range(2):  # height 2, width 3, row_step 3*24 + 8
        pts = [[0, 3 * r + c, -1, 0.5, 10 * r + c, c] for c in range(3)]
        rows.append(np.asarray(pts, '<f4').tobytes() + b'\xee' * 8)
    msg = PointCloud2()
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                  for i, n in enumerate(names)]
    msg.height, msg.width, msg.point_step, msg.row_step = 2, 3, 24, 80
    msg.data = array.array('B', b''.join(rows))
    pos, conf = cloud_to_keypoints(msg, num_joints=7)[0]
    assert pos.shape == (7, 2) and np.isnan(pos[6]).all() and conf[6] == 0
    np.testing.assert_allclose(pos[:6], [[0, 0], [1, 1], [2, 2], [0, 10], [1, 11], [2, 12]])
    np.testing.assert_allclose(conf[:6], 0.5)


def test_cloud_with_unaligned_fields():
    """Packed layouts whose float32 fields do not start at multiples of 4 (a 1-byte tag
    first) read the same as aligned ones."""
    pts = np.random.default_rng(0).uniform(0, 100, size=(2, 17, 2))
    conf = np.full((2, 17), 0.25)
    aligned = cloud_schema.pack(pts, conf, [4, 9])
    rows = np.frombuffer(aligned, np.uint8).reshape(34, 20)
    data = np.concatenate([np.full((34, 1), 7, np.uint8), rows], axis=1).tobytes()
    names, offsets = list(cloud_schema.FIELDS_2D), [1 + 4 * i for i in range(5)]
    got = cloud_schema.unpack(data, names, offsets, 21, 34, 17)
    want = cloud_schema.unpack(aligned, names, [4 * i for i in range(5)], 20, 34, 17)
    assert sorted(got) == sorted(want) == [4, 9]
    for pid in got:
        np.testing.assert_array_equal(got[pid][0], want[pid][0])
        np.testing.assert_array_equal(got[pid][1], want[pid][1])
    np.testing.assert_allclose(got[9][0], pts[1], rtol=1e-6)


def _cloud(**change):
    msg = keypoints_to_cloud(None, np.zeros((1, 17, 2)), np.ones((1, 17)))
    for k, v in change.items():
        setattr(msg, k, v)
    return msg


@pytest.mark.parametrize('msg, words', [
    (_cloud(fields=[PointField(name='x', offset=0, datatype=7, count=1)]), 'lacks fields'),
    (_cloud(fields=[PointField(name=n, offset=4 * i, datatype=8 if n == 'y' else 7, count=1)
                    for i, n in enumerate(cloud_schema.FIELDS_2D)]), 'FLOAT32'),
    (_cloud(fields=[PointField(name=n, offset=4 * i, datatype=7, count=2 if i == 0 else 1)
                    for i, n in enumerate(cloud_schema.FIELDS_2D)]), 'count 2'),
    (_cloud(point_step=12), 'does not fit point_step'),
    (_cloud(width=18), 'row_step'),
    (_cloud(data=array.array('B', b'\0' * 100)), 'too short'),
    (_cloud(width=16, row_step=16 * 20), 'wrong point count'),
    (_cloud(is_bigendian=True), 'big-endian'),
])
def test_cloud_errors(msg, words):
    with pytest.raises(ValueError, match=words):
        cloud_to_keypoints(msg)


def test_cloud_bad_inputs():
    with pytest.raises(ValueError, match='confidence shape'):
        keypoints_to_cloud(None, np.zeros((2, 17, 3)), np.zeros((2, 16)))
    with pytest.raises(ValueError, match='2D or 3D'):
        keypoints_to_cloud(None, np.zeros((1, 17, 4)), np.zeros((1, 17)))
    with pytest.raises(ValueError, match='person ids'):
        keypoints_to_cloud(None, np.zeros((2, 17, 2)), np.zeros((2, 17)), person_ids=[1])
    dup = keypoints_to_cloud(None, np.zeros((2, 17, 2)), np.zeros((2, 17)), person_ids=[3, 3])
    with pytest.raises(ValueError, match='distinct joints'):
        cloud_to_keypoints(dup)


def test_survives_ros_serialization():
    """The messages are well-formed for the middleware (CDR round trip through rclpy)."""
    ser = pytest.importorskip('rclpy.serialization')
    img = ser.deserialize_message(ser.serialize_message(numpy_to_image(RGB, 'bgr8')), Image)
    np.testing.assert_array_equal(image_to_numpy(img, 'bgr8'), RGB)
    pts, conf = RNG.normal(size=(3, 17, 3)), RNG.uniform(size=(3, 17))
    cloud = ser.deserialize_message(
        ser.serialize_message(keypoints_to_cloud(_header(), pts, conf)), PointCloud2)
    np.testing.assert_allclose(cloud_to_keypoints(cloud)[2][0], pts[2], rtol=1e-6)
    assert cloud.header.frame_id == 'cam'
