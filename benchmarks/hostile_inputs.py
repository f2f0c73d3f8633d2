"""Cost of hostile inputs that the nodes refuse or cap (issue 17), on this machine.

    python benchmarks/hostile_inputs.py

- a keypoints cloud of 150,000 one-joint persons: ``cloud_schema.unpack`` with
  ``max_persons=20`` (what the lifter does below its point cap; above it the cloud is
  refused unread) and without a cap (one sort, then a loop over the persons);
- a 631-byte JPEG whose header claims 10000x9999: refused from its header.

Before issue 17 the unpacker scanned every point once per person: 150,000 persons took
22 s here (loaded 2-core machine; 8 s on the rig of the report), and the forged JPEG was
refused by the decoder after 1.9 s and +249 MB.
"""
from __future__ import annotations

import array
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
    from sensor_msgs.msg import CompressedImage
    from vp3d_ros.core import cloud_schema
    from vp3d_ros.nodes.ros_conversions import ImageConversionError, compressed_to_numpy
    n = 150_000
    rng = np.random.default_rng(1)
    table = np.stack([rng.uniform(0, 600, n), rng.uniform(0, 600, n), rng.uniform(0, 1, n),
                      np.zeros(n), rng.permutation(n).astype(float)], 1).astype('<f4')
    data, layout = table.tobytes(), cloud_schema.layout_for(2)
    for name, cap in (('max_persons=20', 20), ('no cap', None)):
        t = time.perf_counter()
        got = cloud_schema.unpack(data, layout.names, layout.offsets, layout.point_step, n, 17,
                                  max_persons=cap)
        print(f'unpack {n} one-joint persons, {name}: {len(got)} persons in '
              f'{time.perf_counter() - t:.3f} s')
    ok, small = cv2.imencode('.jpg', np.zeros((16, 16, 3), np.uint8))
    forged = bytearray(small.tobytes())
    pos = forged.index(b'\xff\xc0')
    forged[pos + 5:pos + 9] = (9999).to_bytes(2, 'big') + (10000).to_bytes(2, 'big')
    msg = CompressedImage(format='jpeg')
    msg.data = array.array('B', bytes(forged))
    t = time.perf_counter()
    try:
        compressed_to_numpy(msg)
        print('forged JPEG decoded?!')
    except ImageConversionError as e:
        print(f'forged {len(forged)}-byte JPEG refused in {(time.perf_counter() - t) * 1e3:.2f} '
              f'ms: {e}')


if __name__ == '__main__':
    main()
