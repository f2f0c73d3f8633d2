"""Test helper: republish a bag's messages as recorded (raw CDR) with their original timing.

What ``ros2 bag play`` does, on rosbags + rclpy (the PyPI wheels have no rosbag2_py): one
publisher per topic with the recorded type, each message sent as its stored serialized bytes
(``Publisher.publish(bytes)``, no re-encoding), spaced like the bag times (``rate`` scales).
``gate(topic, index)`` may block before a message (e.g. until a node answered the previous
frame): the schedule then shifts by the wait, keeping the recorded spacing afterwards.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, Iterable, Optional

from vp3d_ros.io.bag_io import open_bag
from vp3d_ros.nodes.common import message_class


class BagReplay:
    def __init__(self, node, bag_path, topics: Optional[Iterable[str]] = None,
                 remap: Optional[Dict[str, str]] = None, rate: float = 1.0, qos=None):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        if rate <= 0:
            raise ValueError(f'rate must be > 0, got {rate}')
        self.bag_path = bag_path
        self.rate = rate
        qos = qos or QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        with open_bag(bag_path) as bag:
            available = bag.topics
        self.topics = list(topics) if topics is not None else list(available)
        missing = [t for t in self.topics if t not in available]
        if missing:
            raise ValueError(f'{bag_path} has no topics {missing} (it has {list(available)})')
        remap = remap or {}
        self.publishers = {t: node.create_publisher(message_class(available[t].msgtype),
                                                    remap.get(t, t), qos)
                           for t in self.topics}
        self.sent: Dict[str, int] = {t: 0 for t in self.topics}

    def wait_for_subscribers(self, counts: Optional[Dict[str, int]] = None,
                             timeout: float = 60.0) -> bool:
        """Until each topic in ``counts`` (default: every topic, 1) has that many readers."""
        counts = counts if counts is not None else {t: 1 for t in self.topics}
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(self.publishers[t].get_subscription_count() >= n for t, n in counts.items()):
                return True
            time.sleep(0.05)
        return False

    def play(self, gate: Optional[Callable[[str, int], None]] = None) -> int:
        """Publish every message once, in bag order; returns how many were sent."""
        start = time.monotonic()
        first = None
        n = 0
        with open_bag(self.bag_path) as bag:
            for topic, _, bag_ns, raw in bag.messages(self.topics):
                first = bag_ns if first is None else first
                if gate is not None:
                    waited = time.monotonic()
                    gate(topic, self.sent[topic])
                    start += time.monotonic() - waited
                delay = start + (bag_ns - first) / 1e9 / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self.publishers[topic].publish(bytes(raw))
                self.sent[topic] += 1
                n += 1
        return n
