"""recorder node: landmark streams -> rosbag2 "LandmarkRecord bags" (MCAP or sqlite3).

Messages are stored serialized exactly as received (raw subscriptions, no re-encoding),
with stock message definitions, so ``ros2 bag info/play`` and the exporters read them.
Topics: the ``topics`` list, or (default) every ``.../keypoints_2d`` and ``.../skeleton_3d``
PointCloud2 topic discovered on the graph (``topic_suffixes``), and the kinematics node's
``.../kinematics/joint_states`` (sensor_msgs/JointState). Each topic is subscribed with the reliability its
publishers offer (reliable publishers get a reliable, lossless subscription; best-effort
ones a best-effort subscription; transient-local publishers, like pose2d's and the lifter's,
get a transient-local subscription, so what they sent just before the match is not lost).
The bag is opened before any subscription exists, so an unwritable directory stops the node
(exit status 2) before data could be lost; SIGINT/SIGTERM close it.

Crash safety: the bag is flushed every ``flush_period_s`` even when no message arrives, so
after a SIGKILL ``bag_io.reindex`` recovers everything older than that. A write error (disk
full, file size limit) stops recording with one clear error, keeps what was written (the
bag is indexed on the spot when possible), turns /diagnostics to ERROR and leaves the node
(and the rest of the rig) running; the node then exits with status 1 when stopped.
Bag times are the node clock at reception; under ``use_sim_time`` with no /clock yet they
fall back to the system clock, with a warning, rather than recording everything at t=0.

Provenance: the bag's ``vp3d.checkpoint`` is what the lifter says it loaded (its latched
``~/model`` announcement, discovered on every std_msgs/String topic named ``*/model``), not
a parameter of this node, so a lifter started with another checkpoint is recorded as such.
Every distinct announcement goes to ``vp3d.models``; none (no lifter) leaves the path empty.
"""
from __future__ import annotations

import json
import os
import time
from typing import Dict, List

from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from ..io.bag_io import META_CHECKPOINT, META_MODELS, BagError, BagWriter, recording_metadata
from ..io.joint_states import JOINT_STATE_TYPE
from .common import (ConfigError, Throttle, declare, message_class, offered_qos,
                     parameters_snapshot, run_node, steady_timer)
from .diagnostics import NodeDiagnostics

DEFAULT_SUFFIXES = ('keypoints_2d', 'skeleton_3d', 'skeleton_3d/world', 'skeleton_3d/fused')
JOINT_STATE_SUFFIX = 'kinematics/joint_states'   # the kinematics node's live joint angles
MODEL_TYPE = 'std_msgs/msg/String'
MODEL_SUFFIX = '/model'  # the lifter's ~/model


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
        subject = {k: p(f'subject_{k}', d, desc) for k, d, desc in (
            ('id', '', 'subject identifier'), ('height_m', 0.0, 'subject height (m)'),
            ('mass_kg', 0.0, 'subject mass (kg)'), ('age', 0, 'subject age (years)'),
            ('sex', '', 'subject sex'))}
        self.discovery_period = p('discovery_period_s', 0.5, 'how often to look for new topics')
        flush_period = p('flush_period_s', 1.0, 'put the bag on disk this often (what a crash '
                         'can lose); also flushed while no message arrives')
        if storage not in ('mcap', 'sqlite3'):
            raise ConfigError(f"storage must be 'mcap' or 'sqlite3', got {storage!r}")
        name = bag_name or time.strftime('landmarks_%Y%m%d_%H%M%S')
        self.path = os.path.join(bag_dir, name)
        metadata = recording_metadata(layout, {'path': '', 'sha256': ''},
                                      parameters_snapshot(self),
                                      {k: v for k, v in subject.items() if v not in ('', 0, 0.0)},
                                      producer='recorder_node')
        try:
            os.makedirs(bag_dir, exist_ok=True)
            self.writer = BagWriter(self.path, storage=storage, metadata=metadata,
                                    split_max_bytes=split_bytes, split_max_duration_s=split_s,
                                    flush_interval_s=flush_period)
        except (BagError, OSError) as e:
            reason = (f'{e.strerror} ({e.filename or bag_dir})'
                      if isinstance(e, OSError) and e.strerror else str(e))
            raise ConfigError(f'recorder: cannot record to {self.path}: {reason}; set bag_dir '
                              'to a writable directory (and bag_name to a new name)') from e
        self.counts: Dict[str, int] = {}
        self._subs = {}
        self._model_subs = {}
        self.models: List[dict] = []  # distinct lifter announcements, in order seen
        self.failed = False
        self.exit_code = 0
        self.throttle = Throttle()
        self.diag = NodeDiagnostics(self, 'recorder', extra=lambda: {
            'bag': self.path, 'topics': len(self._subs), 'recording': str(not self.failed).lower(),
            **{f'count{t}': n for t, n in self.counts.items()}})
        self._discover()
        steady_timer(self, self.discovery_period, self._discover)
        steady_timer(self, flush_period, self._flush)
        self.get_logger().info(f'recording to {self.path} ({storage})')
        stale = sorted({'checkpoint', 'lifter_mode'} & set(self._parameter_overrides))
        if stale:
            self.get_logger().warning(
                f'parameters {stale} are no longer used by the recorder: the bag records the '
                "model the lifter announces on its ~/model topic")

    def _wanted(self, topic: str, types) -> bool:
        if self.topics:
            return topic in self.topics
        return (('sensor_msgs/msg/PointCloud2' in types and topic.endswith(self.suffixes))
                or (JOINT_STATE_TYPE in types and topic.endswith(JOINT_STATE_SUFFIX)))

    def _qos_for(self, topic: str) -> QoSProfile:
        reliability, durability = offered_qos(self, topic) or (ReliabilityPolicy.BEST_EFFORT,
                                                               DurabilityPolicy.VOLATILE)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=reliability,
                          durability=durability)

    def _discover(self):
        for topic, types in self.get_topic_names_and_types():
            if (MODEL_TYPE in types and topic.endswith(MODEL_SUFFIX)
                    and topic not in self._model_subs
                    and self.get_publishers_info_by_topic(topic)):
                self._model_subs[topic] = self.create_subscription(
                    message_class(MODEL_TYPE), topic, lambda m, t=topic: self._on_model(t, m),
                    self._qos_for(topic))
            if topic in self._subs or not self._wanted(topic, types):
                continue
            if not self.get_publishers_info_by_topic(topic):
                # Seen only through a subscriber: wait for a publisher to learn its type and
                # QoS (a guessed best-effort subscription would lose a reliable stream).
                continue
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

    def _on_model(self, topic: str, msg):
        """A lifter's announcement of what it loaded -> the bag's provenance metadata."""
        try:
            info = json.loads(msg.data)
            if not isinstance(info, dict) or not {'path', 'sha256'} <= set(info):
                raise ValueError('not a JSON object with path and sha256')
        except ValueError as e:
            self.throttle.log(self.get_logger().warning, f'model-{topic}',
                              f'{topic}: not a lifter model announcement, ignored ({e})')
            return
        info['topic'] = topic
        if info in self.models or self.writer.closed:
            return
        self.models.append(info)
        try:
            self.writer.update_metadata({META_CHECKPOINT: self.models[0], META_MODELS: self.models})
        except (BagError, OSError) as e:
            self.get_logger().error(f'cannot record the lifter model in {self.path}: {e}')
            return
        self.get_logger().info(f'lifter model from {topic}: {info["path"]} '
                               f'(sha256 {str(info["sha256"])[:12]}...) recorded in the metadata')
        if len(self.models) > 1:
            self.get_logger().warning(
                f'{len(self.models)} different lifter models announced during this recording; '
                'vp3d.checkpoint names the first, vp3d.models lists them all')

    def _bag_time_ns(self) -> int:
        now = self.get_clock().now().nanoseconds
        if now == 0 and self.get_clock().ros_time_is_active:
            self.diag.warn('use_sim_time without /clock: bag times from the system clock')
            self.throttle.log(self.get_logger().warning, 'no-clock',
                              'use_sim_time is true but no /clock has been received: recording '
                              'with system-clock bag times (start the /clock publisher, e.g. '
                              '`ros2 bag play --clock`, or set use_sim_time false)')
            return time.time_ns()
        self.diag.warn(None)
        return now

    def _on_message(self, topic: str, raw: bytes):
        self.diag.received()
        if self.failed:
            self.diag.dropped()
            return
        try:
            self.writer.write(topic, self._bag_time_ns(), raw)
            self.counts[topic] += 1
            self.diag.processed(0.0)
        except (BagError, OSError) as e:
            self._stop_recording(e)
        except Exception as e:  # noqa: BLE001 - never take the recorder down with one message
            self.diag.error()
            self.throttle.log(self.get_logger().error, f'write-{type(e).__name__}',
                              f'{topic}: message not recorded: {type(e).__name__}: {e}')

    def _flush(self):
        """Flush even when idle: after a SIGKILL, reindex recovers all but the last period."""
        if self.failed or self.writer.closed:
            return
        try:
            self.writer.flush()
        except (BagError, OSError) as e:
            self._stop_recording(e)

    def _stop_recording(self, e: Exception):
        self.failed = True
        self.exit_code = 1
        self.diag.error()
        self.diag.fault(f'recording stopped: {e}')
        self.get_logger().error(f'recording stopped, {self.path} keeps what was written before '
                                f'the error: {str(e).rstrip(".")}. Other nodes are unaffected; '
                                'this recorder stays up without recording (/diagnostics: ERROR) '
                                'until restarted.')

    def drain_topics(self):
        """On shutdown the recorder records until these have no publisher (common._spin):
        a lifter stopped by the same ros2 launch publishes its owed poses as it closes."""
        return list(self._subs)

    def close(self):
        try:
            self.writer.close()
        except (BagError, OSError) as e:
            self.exit_code = 1
            self.get_logger().error(f'closing {self.path}: {e}')
        total = sum(self.counts.values())
        if not self.models and any(n for t, n in self.counts.items() if 'skeleton_3d' in t):
            self.get_logger().warning(f'{self.path}: skeletons recorded but no lifter announced '
                                      'its model (~/model): vp3d.checkpoint is empty')
        if self.failed:  # some of these never reached the disk: the error line says how many did
            self.get_logger().info(f'bag closed: {self.path} (recording stopped on a write error; '
                                   f'{total} messages were accepted before it, the bag keeps '
                                   'those the error reported as written)')
        else:
            self.get_logger().info(f'bag closed: {self.path} ({total} messages: {self.counts})')


def main(args=None):
    raise SystemExit(run_node(RecorderNode, args))


if __name__ == '__main__':
    main()
