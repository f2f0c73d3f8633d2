"""recorder node: landmark streams -> rosbag2 "LandmarkRecord bags" (MCAP or sqlite3).

Messages are stored serialized exactly as received (raw subscriptions, no re-encoding),
with stock message definitions, so ``ros2 bag info/play`` and the exporters read them.
Topics: the ``topics`` list, or (default) every ``.../keypoints_2d`` and ``.../skeleton_3d``
PointCloud2 topic discovered on the graph. Each topic is subscribed with the reliability its
publishers offer (reliable publishers get a reliable, lossless subscription; best-effort
ones a best-effort subscription). The bag is opened before any subscription exists, so an
unwritable directory stops the node before data could be lost; SIGINT/SIGTERM close it.
"""
from __future__ import annotations

import os
import time
from typing import Dict

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..bag_io import BagError, BagWriter, recording_metadata
from ..checkpoint import file_sha256
from .common import (ConfigError, Throttle, declare, message_class, parameters_snapshot,
                     run_node)
from .diagnostics import NodeDiagnostics

DEFAULT_SUFFIXES = ('keypoints_2d', 'skeleton_3d')


class RecorderNode(Node):
    def __init__(self, **kwargs):
        super().__init__('recorder', **kwargs)
        p = lambda *a, **k: declare(self, *a, **k)  # noqa: E731
        self.topics = [t for t in p('topics', [''], "topics to record; [''] = discover every "
                                    "*/keypoints_2d and */skeleton_3d PointCloud2 topic") if t]
        suffixes = p('topic_suffixes', list(DEFAULT_SUFFIXES), 'suffixes recorded by discovery')
        self.suffixes = tuple(suffixes)
        bag_dir = os.path.expanduser(p('bag_dir', 'vp3d_bags', 'directory for new bags'))
        bag_name = p('bag_name', '', "bag folder name; '' = landmarks_<date>_<time>")
        storage = p('storage', 'mcap', "'mcap' (default) or 'sqlite3'")
        split_bytes = p('split_max_bytes', 0, 'start a new bag file past this size (0 = never)')
        split_s = p('split_max_duration_s', 0.0, 'start a new bag file past this duration (0 = never)')
        layout = p('keypoint_layout', 'h36m', 'layout of the keypoints_2d topics (metadata)')
        checkpoint = p('checkpoint', '', 'lifter checkpoint, for metadata (path + sha256)')
        lifter_mode = p('lifter_mode', 'causal', "with checkpoint '': which shipped default the "
                        'lifter uses (causal | symmetric), for metadata')
        subject = {k: p(f'subject_{k}', d, desc) for k, d, desc in (
            ('id', '', 'subject identifier'), ('height_m', 0.0, 'subject height (m)'),
            ('mass_kg', 0.0, 'subject mass (kg)'), ('age', 0, 'subject age (years)'),
            ('sex', '', 'subject sex'))}
        self.discovery_period = p('discovery_period_s', 0.5, 'how often to look for new topics')
        if storage not in ('mcap', 'sqlite3'):
            raise ConfigError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
        name = bag_name or time.strftime('landmarks_%Y%m%d_%H%M%S')
        self.path = os.path.join(bag_dir, name)
        ckpt_meta = {'path': '', 'sha256': ''}
        if not checkpoint:
            from ..lifter_config import DEFAULT_CHECKPOINTS
            checkpoint = DEFAULT_CHECKPOINTS.get(lifter_mode, '')
        if checkpoint:
            ckpt_meta = {'path': os.path.abspath(checkpoint),
                         'sha256': file_sha256(checkpoint) if os.path.isfile(checkpoint) else ''}
        metadata = recording_metadata(layout, ckpt_meta, parameters_snapshot(self),
                                      {k: v for k, v in subject.items() if v not in ('', 0, 0.0)},
                                      producer='recorder_node')
        try:
            os.makedirs(bag_dir, exist_ok=True)
            self.writer = BagWriter(self.path, storage=storage, metadata=metadata,
                                    split_max_bytes=split_bytes, split_max_duration_s=split_s)
        except (BagError, OSError) as e:
            raise ConfigError(f'recorder: cannot record to {self.path}: {e}') from e
        self.counts: Dict[str, int] = {}
        self._subs = {}
        self.failed = False
        self.throttle = Throttle()
        self.diag = NodeDiagnostics(self, 'recorder', extra=lambda: {
            'bag': self.path, 'topics': len(self._subs), **{f'count{t}': n for t, n in self.counts.items()}})
        self._discover()
        self.create_timer(self.discovery_period, self._discover)
        self.get_logger().info(f'recording to {self.path} ({storage})')

    def _wanted(self, topic: str, types) -> bool:
        if self.topics:
            return topic in self.topics
        return 'sensor_msgs/msg/PointCloud2' in types and topic.endswith(self.suffixes)

    def _qos_for(self, topic: str) -> QoSProfile:
        infos = self.get_publishers_info_by_topic(topic)
        reliable = bool(infos) and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE
                                       for i in infos)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                          reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
                          durability=DurabilityPolicy.VOLATILE)

    def _discover(self):
        for topic, types in self.get_topic_names_and_types():
            if topic in self._subs or not self._wanted(topic, types):
                continue
            if self.topics and not self.get_publishers_info_by_topic(topic):
                continue  # wait for a publisher to learn its type and QoS
            msgtype = types[0]
            try:
                self.writer.add_topic(topic, msgtype)
            except BagError as e:
                self.get_logger().error(f'cannot record {topic}: {e}')
                continue
            self.counts[topic] = 0
            self._subs[topic] = self.create_subscription(
                message_class(msgtype), topic, lambda raw, t=topic: self._on_message(t, raw),
                self._qos_for(topic), raw=True)
            self.get_logger().info(f'recording {topic} [{msgtype}]')

    def _on_message(self, topic: str, raw: bytes):
        self.diag.received()
        if self.failed:
            self.diag.dropped()
            return
        try:
            self.writer.write(topic, self.get_clock().now().nanoseconds, raw)
            self.counts[topic] += 1
            self.diag.processed(0.0)
        except (BagError, OSError) as e:
            self.failed = True
            self.diag.error()
            self.get_logger().error(f'recording stopped, {self.path} keeps what was written: {e}')

    def close(self):
        try:
            self.writer.close()
        except (BagError, OSError) as e:
            self.get_logger().error(f'closing {self.path}: {e}')
        total = sum(self.counts.values())
        self.get_logger().info(f'bag closed: {self.path} ({total} messages: {self.counts})')


def main(args=None):
    raise SystemExit(run_node(RecorderNode, args))


if __name__ == '__main__':
    main()
