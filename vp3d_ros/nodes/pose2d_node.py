"""pose2d node: camera images -> MediaPipe Pose -> 2D keypoints stamped like the image.

Live behaviour: a subscription callback only parks the newest frame in a one-slot mailbox;
a worker thread runs MediaPipe on whatever is newest. A frame overwritten before the worker
took it is a counted drop, so the node never builds a queue of stale frames. Every
processed frame yields a ``keypoints_2d`` message, an empty cloud when nobody is seen.

Bad input never stops the node: an image that cannot be decoded (unsupported encoding,
sizes inconsistent with the data, empty, truncated, corrupt compressed data) is skipped with
a rate-limited warning per kind of fault and counted in /diagnostics ``errors``. A change of
image size or stamps going backwards (a bag looping) restart the MediaPipe tracker, whose
state belongs to the old geometry/time line; at most one restart per ``SIZE_RESTART_MIN_S``
for size changes (frames of yet another size sooner than that are skipped and counted as
dropped). Log lines are rate-limited per kind of problem (the varying text, such as an
encoding string, is not part of the key).

``keypoints_2d/image_info`` (sensor_msgs/CameraInfo, reliable + transient-local, depth 1):
the size of the images the keypoints are in, published before the first keypoints and again
whenever the size changes, stamped like the first frame of that size. Only header, width and
height are set (K all zero: "uncalibrated" by the message's convention). The lifter
normalises by it, so a camera that publishes no camera_info needs no size parameter; a
camera_info that disagrees with it makes the lifter refuse the frames.

``person`` in the clouds is a track id (:mod:`vp3d_ros.core.tracking`): it stays with one person
from frame to frame, ends when that person is gone and is never given to anyone else;
``subject`` keeps one chosen person only. /diagnostics counts tracks started, lost,
recovered and ended.
"""
from __future__ import annotations

import threading
import time
from typing import Optional

import numpy as np
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2

from . import ros_conversions
from ..vision.pose_stage import PoseStage
from .ros_conversions import (ImageConversionError, compressed_to_numpy, image_to_numpy,
                               keypoints_to_cloud)
from ..core.options import PoseOptions
from ..core.track_rules import TrackRules
from .common import ConfigError, Throttle, declare, declare_options, problem_kind, run_node
from .diagnostics import NodeDiagnostics

# At most one MediaPipe restart per this many seconds for image size changes: a size that
# changed on every frame rebuilt the graph on every frame. Frames of a new size arriving
# sooner are skipped (counted as dropped) while frames of the current size go on.
SIZE_RESTART_MIN_S = 2.0


def fault_kind(e: Exception) -> str:
    """The rate-limit key of an image that cannot be decoded: the kind of fault, without
    what varies (an encoding or format string, sizes), so that a stream sending a new
    encoding string on every frame gets one line per period, not one per frame."""
    return 'decode-' + problem_kind(str(e)).split(':')[0]

class Pose2dNode(Node):
    def __init__(self, **kwargs):
        super().__init__('pose2d', **kwargs)
        p = lambda *a: declare(self, *a)  # noqa: E731
        # MediaPipe and person tracking: declared once (core.options), as vp3d-offline's flags.
        opts = declare_options(self, PoseOptions)
        self.backend = opts.backend
        self.layout = p('keypoint_layout', 'h36m', "layout of keypoints_2d: 'h36m' or 'coco'")
        self.publish_33 = p('publish_landmarks', False, 'also publish all 33 MediaPipe landmarks')
        self.publish_world = p('publish_world_landmarks', False,
                               "also publish MediaPipe's world landmarks (metres, hip-centred)")
        # The lifter's track rule, here for keypoints_2d and the landmarks alike.
        repair_swaps = declare_options(self, TrackRules, only=('repair_swaps',)).repair_swaps
        compressed = p('compressed', False, "subscribe to '<image>/compressed' "
                       '(sensor_msgs/CompressedImage) instead of raw images')
        if self.layout not in ('h36m', 'coco'):
            raise ConfigError(f"keypoint_layout must be 'h36m' or 'coco', got {self.layout!r}")
        try:
            self.tracking = opts.tracking()
        except (TypeError, ValueError) as e:
            raise ConfigError(f'pose2d: {e}') from e
        from ..vision.pose_estimation import PoseEstimationError, create_estimator
        self._estimator_args = dict(opts.estimator_args(), video_mode=True)
        try:
            self.stage = PoseStage(lambda: create_estimator(**self._estimator_args), self.layout,
                                   self.tracking, size_restart_min_s=SIZE_RESTART_MIN_S,
                                   repair_swaps=repair_swaps)
        except (PoseEstimationError, ValueError, OSError) as e:
            raise ConfigError(f'pose2d: {e}') from e

        # Reliable + transient-local: a subscriber matched a moment late (the recorder meeting
        # a restarted pose2d) still gets the last frames (~1.5 s at 30 fps) instead of losing
        # them.
        out_qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.pub = self.create_publisher(PointCloud2, 'keypoints_2d', out_qos)
        self.pub_size = self.create_publisher(
            CameraInfo, 'keypoints_2d/image_info',
            QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                       durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self._size_sent = None
        self.pub_33 = (self.create_publisher(PointCloud2, 'landmarks', out_qos)
                       if self.publish_33 else None)
        self.pub_world = (self.create_publisher(PointCloud2, 'world_landmarks', out_qos)
                          if self.publish_world else None)
        if compressed:
            self.create_subscription(CompressedImage, 'image/compressed', self._on_image,
                                     qos_profile_sensor_data)
        else:
            self.create_subscription(Image, 'image', self._on_image, qos_profile_sensor_data)
        self.camera_size = None
        self.create_subscription(CameraInfo, 'camera_info', self._on_info, qos_profile_sensor_data)
        self.throttle = Throttle()
        self.diag = NodeDiagnostics(self, 'pose2d', extra=self._diag_extra)
        self._slot: Optional[object] = None
        self._cv = threading.Condition()
        self._running = True
        self._worker = threading.Thread(target=self._work, name='pose2d-worker', daemon=True)
        self._worker.start()
        if compressed and ros_conversions.simplejpeg is None:
            self.get_logger().warning('simplejpeg is not installed: damaged JPEG frames cannot be '
                                      'told from good ones (pip install simplejpeg)')
        self.get_logger().info(f'pose2d ready: backend={self.backend} layout={self.layout} '
                               f'listening on {"image/compressed" if compressed else "image"}')

    def _diag_extra(self):
        swaps = self.stage.swaps
        return {**self.tracking.values(), 'swaps_repaired': swaps.repaired if swaps else 0}

    def _on_info(self, msg: CameraInfo):
        if not msg.width or not msg.height:
            self.throttle.log(self.get_logger().warning, 'info-empty',
                              f'camera_info with an empty image size ({msg.width}x{msg.height}) '
                              'ignored; fix the camera driver\'s calibration')
            return
        self.camera_size = (msg.width, msg.height)

    def _on_image(self, msg):
        self.diag.received()
        with self._cv:
            dropped = self._slot is not None
            self._slot = msg
            self._cv.notify()
        if dropped:
            self.diag.dropped()
            self.throttle.log(self.get_logger().warning, 'drop',
                              'images arrive faster than pose estimation: older frames dropped, '
                              f'the newest is processed ({self.diag.counts["dropped"]} dropped '
                              'so far; see /diagnostics)')

    def _work(self):
        while True:
            with self._cv:
                while self._slot is None and self._running:
                    self._cv.wait(0.5)
                if not self._running:
                    return
                msg, self._slot = self._slot, None
            try:
                self._process(msg)
            except Exception as e:  # a bad frame must never kill the camera's node
                self.diag.error()
                try:
                    self.throttle.log(self.get_logger().error, f'process-{type(e).__name__}',
                                      f'frame skipped: {type(e).__name__}: {e}')
                except Exception:  # noqa: BLE001 - the worker outlives its own logging
                    pass

    def _decode(self, msg) -> Optional[np.ndarray]:
        try:
            if isinstance(msg, CompressedImage):
                return compressed_to_numpy(msg)
            return image_to_numpy(msg)
        except ImageConversionError as e:
            self.diag.error()
            # One rate limit per kind of fault (numbers stripped), so a stream broken one
            # way cannot hide that it is also broken another way.
            kind = fault_kind(e)
            stamp = msg.header.stamp
            self.throttle.log(self.get_logger().warning, kind,
                              f'bad image skipped (stamp {stamp.sec}.{stamp.nanosec:09d}, '
                              f'frame_id {msg.header.frame_id!r}): {e}')
            return None

    def _process(self, msg):
        t0 = time.perf_counter()
        rgb = self._decode(msg)
        if rgb is None:
            return
        h, w = rgb.shape[:2]
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if self.camera_size and tuple(self.camera_size) != (w, h):
            self.throttle.log(self.get_logger().error, 'size',
                              f'camera_info says {self.camera_size[0]}x{self.camera_size[1]} '
                              f'but images are {w}x{h}; the lifter will refuse these frames '
                              'until they agree')
        old_size = self.stage.size
        traded = self.stage.swaps.repaired if self.stage.swaps else 0
        try:
            det = self.stage.process(rgb, stamp_ns)
        finally:
            self._log_restart()
        if self.stage.swaps and self.stage.swaps.repaired > traded:
            self.throttle.log(self.get_logger().info, 'swap',
                              'MediaPipe named a leg or an arm the wrong way round (left for '
                              "right): traded back from the person's track "
                              f'({self.stage.swaps.repaired} limb-frames so far; swaps_repaired '
                              'in /diagnostics; repair_swaps false to publish the labels as '
                              'detected)')
        if det is None:
            # A size that changes on every frame must not rebuild MediaPipe every frame.
            self.diag.dropped()
            self.throttle.log(self.get_logger().warning, 'size-unstable',
                              f'image size changed again ({old_size[0]}x{old_size[1]} -> '
                              f'{w}x{h}) within {SIZE_RESTART_MIN_S:.0f} s of the last tracker '
                              f'restart: frame skipped (at most one restart per '
                              f'{SIZE_RESTART_MIN_S:.0f} s; frames of the current size go on)')
            return
        if self._size_sent != (w, h):  # before the keypoints it describes
            self.pub_size.publish(CameraInfo(header=msg.header, width=w, height=h))
            self._size_sent = (w, h)
        ids = det.ids
        self.pub.publish(keypoints_to_cloud(msg.header, det.keypoints, det.confidence, ids))
        if self.pub_33 is not None:
            self.pub_33.publish(keypoints_to_cloud(msg.header, det.landmarks, det.visibility, ids))
        if self.pub_world is not None:
            self.pub_world.publish(keypoints_to_cloud(msg.header, np.nan_to_num(det.world),
                                                      det.visibility, ids))
        self.diag.processed(time.perf_counter() - t0, persons=len(ids))

    def _log_restart(self):
        """Say why the stage restarted MediaPipe (size changes, already at most one per
        SIZE_RESTART_MIN_S, every time; the others rate-limited)."""
        r = self.stage.restarted
        if r is None:
            return
        if r.kind == 'size':
            self.get_logger().info(f'{r.why}: pose tracker restarted')
        else:
            self.throttle.log(self.get_logger().info, 'backwards' if r.kind == 'backwards'
                              else 'restart', f'{r.why}: pose tracker restarted')

    def close(self):
        with self._cv:
            self._running = False
            self._cv.notify_all()
        self._worker.join(timeout=5)
        self.stage.close()


def main(args=None):
    raise SystemExit(run_node(Pose2dNode, args))


if __name__ == '__main__':
    main()
