"""video_source node: a video file as a camera (like image_publisher / video_stream_opencv).

Publishes ``image`` (sensor_msgs/Image) and ``camera_info`` at the clip's frame rate (or
``rate``), optionally looping. Stamps are the node clock at publication (a camera's
behaviour; with use_sim_time they follow /clock). The CameraInfo carries the image size
and a nominal pinhole model (focal length = image diagonal, centred principal point, no
distortion) unless ``camera_info_yaml`` gives a calibration.

A synchronised rig from files: ``cameras`` (e.g. ``['cam01', 'cam02']``) and one video per
camera in ``video`` (comma-separated, same order) play every camera's frame ``i`` in the same
tick with the same stamp, on ``/<cam>/image`` and ``/<cam>/camera_info`` (frame_id
``<cam>/<frame_id>``), as hardware-synchronised cameras would; separate video_source
processes would start apart and stamp one instant differently per camera.
"""
from __future__ import annotations

import os
import time

import cv2
import numpy as np
from builtin_interfaces.msg import Time
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
        video = p('video', '', "video file; '' = the bundled demo clip; with several "
                  "cameras one file per camera, comma-separated") or BUNDLED_CLIP
        cameras = [c.strip('/') for c in p('cameras', [''], "several camera namespaces: play "
                   "one video per camera in lockstep on /<cam>/image (one stamp per instant); "
                   "[''] = one camera, topics image and camera_info") if c.strip('/')]
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
        videos = [v.strip() for v in video.split(',')] if cameras else [video]
        if cameras and len(videos) != len(cameras):
            raise ConfigError(f'video_source: {len(cameras)} cameras {cameras} need as many '
                              f'comma-separated videos, got {len(videos)}: {video!r}')
        self.caps, self.infos, sizes = [], [], []
        for v in videos:
            if not os.path.isfile(v):
                raise ConfigError(f'video_source: no such video file: {v}')
            cap = cv2.VideoCapture(v)
            ok, first = cap.read()
            if not cap.isOpened() or not ok:
                raise ConfigError(f'video_source: cannot decode {v} (not a video, or empty)')
            cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            self.caps.append(cap)
            sizes.append(first.shape[:2])
        self.cap = self.caps[0]
        fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.rate = rate or fps
        self.fps = fps
        self.index = 0  # frame index in the clip
        h, w = sizes[0]
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.frame_ids = [f'{c}/{self.frame_id}' for c in cameras] or [self.frame_id]
        self.infos = [nominal_camera_info(sw, sh, f)
                      for (sh, sw), f in zip(sizes, self.frame_ids)]
        self.info = self.infos[0]
        prefixes = [f'/{c}/' for c in cameras] or ['']
        self.pubs = [self.create_publisher(Image, f'{x}image', qos) for x in prefixes]
        self.pub_infos = [self.create_publisher(CameraInfo, f'{x}camera_info', qos)
                          for x in prefixes]
        self.pub, self.pub_info = self.pubs[0], self.pub_infos[0]
        self.sent = 0
        self.finished = False
        self.video = video
        self._delay = max(delay, 1e-3)
        self._t0 = time.monotonic()
        self.throttle = Throttle()
        # Steady timers: the clip plays at its rate in wall time; under use_sim_time only the
        # stamps follow /clock (ROS-time timers would stand still, silently, without /clock).
        self._start = steady_timer(self, 0.2 if self.wait_for else self._delay, self._begin)
        self.get_logger().info(
            f'video_source: {video} {w}x{h} @ {self.rate:.2f} Hz (loop={self.loop})'
            + (f' as cameras {cameras} in lockstep' if cameras else ''))

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
        frames = [cap.read() for cap in self.caps]
        if not all(ok for ok, _ in frames):   # the shortest clip ends the rig
            if not self.loop:
                return self._end()
            for cap in self.caps:
                cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            frames = [cap.read() for cap in self.caps]
            if not all(ok for ok, _ in frames):
                return
            self.stamp_offset_s += self.index / self.fps  # stamps keep increasing
            self.index = 0
        if self.stamp_source == 'video':
            ns = int(round((self.stamp_offset_s + self.index / self.fps) * 1e9))
            stamp = Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
        else:
            stamp = self.get_clock().now().to_msg()
        self.index += 1
        for (_, bgr), pub, pub_info, info, frame_id in zip(
                frames, self.pubs, self.pub_infos, self.infos, self.frame_ids):
            frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if self.encoding == 'rgb8' else bgr
            msg = numpy_to_image(frame, self.encoding)
            msg.header.stamp = stamp       # one instant: the same stamp on every camera
            msg.header.frame_id = frame_id
            info.header.stamp = stamp
            pub_info.publish(info)
            pub.publish(msg)
        self.sent += 1

    def _end(self):
        if not self.finished:
            self.finished = True
            self.get_logger().info(f'video_source: end of clip after {self.sent} frames')

    def close(self):
        for cap in self.caps:
            cap.release()


def main(args=None):
    raise SystemExit(run_node(VideoSourceNode, args))


if __name__ == '__main__':
    main()
