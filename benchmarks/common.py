"""Shared benchmark plumbing: real frames of the bundled clip, node processes in an isolated
ROS domain, an in-process rclpy client (the test harness), percentiles."""
from __future__ import annotations

import os
import sys
import tempfile

import cv2
import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for p in (REPO, os.path.join(REPO, 'test')):
    if p not in sys.path:
        sys.path.insert(0, p)

from ros_harness import Client, NodeProcess, ros_env, unique_domain_id  # noqa: E402

CLIP = os.path.join(REPO, 'vp3d_ros', 'data', 'balancing_cam01.mp4')


def clip_frames(n=None, size=None, path=CLIP):
    """RGB frames of a clip (optionally resized to size=(w, h))."""
    cap = cv2.VideoCapture(path)
    out = []
    while n is None or len(out) < n:
        ok, bgr = cap.read()
        if not ok:
            break
        if size:
            bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA)
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


def pct(values, q):
    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float('nan')


class Session:
    """Node processes + client in a fresh domain; use as a context manager."""

    def __init__(self):
        self.tmp = tempfile.mkdtemp(prefix='vp3d_bench_')
        self.domain = unique_domain_id()
        self.env = ros_env(self.domain, os.path.join(self.tmp, 'ros_log'))
        self.procs = []
        self.client = None

    def start(self, exe, *ros_args, name=None):
        proc = NodeProcess(exe, ros_args, self.env, os.path.join(self.tmp, f'{name or exe}.log'))
        self.procs.append(proc)
        return proc

    def __enter__(self):
        self.client = Client(self.domain)
        return self

    def __exit__(self, *exc):
        self.client.close()
        for p in self.procs:
            p.stop()
        return False
