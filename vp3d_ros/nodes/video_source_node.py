"""video_source node: a video file as a camera (like image_publisher / video_stream_opencv).

Publishes ``image`` (sensor_msgs/Image) and ``camera_info`` at the clip's frame rate (or
``rate``), optionally looping. Stamps are the node clock at publication (a camera's
behaviour; with use_sim_time they follow /clock). The CameraInfo carries the image size
and a nominal pinhole model (focal length = image diagonal, centred principal point, no
distortion) unless ``camera_info_yaml`` gives a calibration.
"""
from __future__ import annotations

import os
import time

import cv2
import numpy as np
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from .. import DATA_DIR
from .ros_conversions import numpy_to_image
from .common import ConfigError, Throttle, declare, run_node, steady_timer

BUNDLED_CLIP = os.path.join(DATA_DIR, 'balancing_cam01.mp4')


def nominal_camera_info(width: int, height: int, frame_id: str) -> CameraInfo:
    f = float(np.hypot(width, height))
    info = CameraInfo(width=width, height=height, distortion_model='plumb_bob')
    info.header.frame_id = frame_id
    info.d = [0.0] * 5
    info.k = [f, 0.0, width / 2, 0.0, f, height / 2, 0.0, 0.0, 1.0]
    info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [f, 0.0, width / 2, 0.0, 0.0, f, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


class VideoSourceNode(Node):
    def __init__(self, **kwargs):
        super().__init__('video_source', **kwargs)
        p = lambda *a: declare(self, *a)  # noqa: E731
        video = p('video', '', "video file; '' = the bundled demo clip") or BUNDLED_CLIP
        self.frame_id = p('frame_id', 'camera_optical_frame', 'frame_id of images and camera_info')
        rate = p('rate', 0.0, 'publication rate in Hz; 0 = the clip frame rate')
        self.loop = p('loop', False, 'start over at the end of the clip')
        self.encoding = p('encoding', 'rgb8', "'rgb8' or 'bgr8'")
        delay = p('start_delay_s', 1.0, 'wait before the first frame (subscribers connect)')
        self.wait_for = [t for t in p('wait_for_topics', [''], "start only once each of these "
                         "topics has a publisher and a subscriber (e.g. ['keypoints_2d', "
                         "'skeleton_3d']: the pipeline is up), or after wait_timeout_s") if t]
        self.wait_timeout_s = p('wait_timeout_s', 60.0, 'start anyway after this long (s)')
        self.max_frames = p('max_frames', 0, 'stop after this many frames (0 = clip length)')
        self.stamp_source = p('stamp_source', 'clock', "'clock' = node clock at publication (a "
                              "camera); 'video' = stamp_offset_s + frame_index / fps (the stamps "
                              "vp3d-offline gives the same clip, for comparisons)")
        self.stamp_offset_s = p('stamp_offset_s', 0.0, "first stamp in 'video' mode (s)")
        if self.stamp_source not in ('clock', 'video'):
            raise ConfigError(f"stamp_source must be 'clock' or 'video', got {self.stamp_source!r}")
        if self.encoding not in ('rgb8', 'bgr8'):
            raise ConfigError(f"encoding must be 'rgb8' or 'bgr8', got {self.encoding!r}")
        if not os.path.isfile(video):
            raise ConfigError(f'video_source: no such video file: {video}')
        self.cap = cv2.VideoCapture(video)
        ok, first = self.cap.read()
        if not self.cap.isOpened() or not ok:
            raise ConfigError(f'video_source: cannot decode {video} (not a video, or empty)')
        self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.rate = rate or fps
        self.fps = fps
        self.index = 0  # frame index in the clip
        h, w = first.shape[:2]
        self.info = nominal_camera_info(w, h, self.frame_id)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.create_publisher(Image, 'image', qos)
        self.pub_info = self.create_publisher(CameraInfo, 'camera_info', qos)
        self.sent = 0
        self.finished = False
        self.video = video
        self._delay = max(delay, 1e-3)
        self._t0 = time.monotonic()
        self.throttle = Throttle()
        # Steady timers: the clip plays at its rate in wall time; under use_sim_time only the
        # stamps follow /clock (ROS-time timers would stand still, silently, without /clock).
        self._start = steady_timer(self, 0.2 if self.wait_for else self._delay, self._begin)
        self.get_logger().info(f'video_source: {video} {w}x{h} @ {self.rate:.2f} Hz '
                               f'(loop={self.loop})')

    def _pipeline_up(self) -> bool:
        for topic in self.wait_for:
            name = self.resolve_topic_name(topic)
            if not self.count_publishers(name) or not self.count_subscribers(name):
                return False
        return True

    def _begin(self):
        if self.wait_for:
            waited = time.monotonic() - self._t0
            if not self._pipeline_up() and waited < self.wait_timeout_s:
                return
            if waited >= self.wait_timeout_s:
                self.get_logger().warning(f'starting although {self.wait_for} are not all up')
            self.wait_for = []
            self._start.cancel()
            self._start = steady_timer(self, self._delay, self._begin)
            return
        self._start.cancel()
        self.get_logger().info('video_source: streaming')
        steady_timer(self, 1.0 / self.rate, self._tick)

    def _tick(self):
        if self.max_frames and self.sent >= self.max_frames:
            return self._end()
        if self.stamp_source == 'clock' and self.get_clock().now().nanoseconds == 0:
            self.throttle.log(self.get_logger().warning, 'no-clock',
                              'use_sim_time is true but no /clock has been received: waiting '
                              "for /clock before publishing (or use stamp_source:='video')")
            return
        ok, bgr = self.cap.read()
        if not ok:
            if not self.loop:
                return self._end()
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self.cap.read()
            if not ok:
                return
            self.stamp_offset_s += self.index / self.fps  # stamps keep increasing
            self.index = 0
        frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if self.encoding == 'rgb8' else bgr
        msg = numpy_to_image(frame, self.encoding)
        if self.stamp_source == 'video':
            ns = int(round((self.stamp_offset_s + self.index / self.fps) * 1e9))
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(ns, 1_000_000_000)
        else:
            msg.header.stamp = self.get_clock().now().to_msg()
        self.index += 1
        msg.header.frame_id = self.frame_id
        self.info.header.stamp = msg.header.stamp
        self.pub_info.publish(self.info)
        self.pub.publish(msg)
        self.sent += 1

    def _end(self):
        if not self.finished:
            self.finished = True
            self.get_logger().info(f'video_source: end of clip after {self.sent} frames')

    def close(self):
        self.cap.release()


def main(args=None):
    raise SystemExit(run_node(VideoSourceNode, args))


if __name__ == '__main__':
    main()
