"""/diagnostics for rig operators: per node input rate, processing time, drops, errors and
any extra values a node adds (e.g. the lifter's window fill)."""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Dict, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class NodeDiagnostics:
    def __init__(self, node, name: str, period_s: float = 1.0,
                 extra: Optional[Callable[[], Dict[str, object]]] = None):
        self.node = node
        self.name = f'{node.get_namespace().rstrip("/")}/{name}'.lstrip('/')
        self.extra = extra
        self.counts = {'received': 0, 'processed': 0, 'dropped': 0, 'errors': 0, 'persons': 0}
        self._times = deque(maxlen=300)
        self._lock = threading.Lock()
        self._window_start = time.monotonic()
        self._window_received = 0
        self.pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        node.create_timer(period_s, self.publish)

    def received(self, n: int = 1):
        with self._lock:
            self.counts['received'] += n
            self._window_received += n

    def dropped(self, n: int = 1):
        with self._lock:
            self.counts['dropped'] += n

    def error(self):
        with self._lock:
            self.counts['errors'] += 1

    def processed(self, seconds: float, persons: int = 0):
        with self._lock:
            self.counts['processed'] += 1
            self.counts['persons'] += persons
            self._times.append(seconds)

    def publish(self):
        now = time.monotonic()
        with self._lock:
            rate = self._window_received / max(1e-9, now - self._window_start)
            self._window_start, self._window_received = now, 0
            times = sorted(self._times)
            counts = dict(self.counts)
        values = {'input_rate_hz': f'{rate:.2f}', **{k: str(v) for k, v in counts.items()}}
        if times:
            values['processing_ms_mean'] = f'{1e3 * sum(times) / len(times):.2f}'
            values['processing_ms_p99'] = f'{1e3 * times[min(len(times) - 1, int(0.99 * len(times)))]:.2f}'
        if self.extra:
            values.update({k: str(v) for k, v in self.extra().items()})
        status = DiagnosticStatus(name=self.name, hardware_id=self.node.get_fully_qualified_name())
        drop_frac = counts['dropped'] / max(1, counts['received'])
        if counts['errors'] and counts['processed'] == 0:
            status.level, status.message = DiagnosticStatus.ERROR, 'no frame processed'
        elif drop_frac > 0.5:
            status.level, status.message = DiagnosticStatus.WARN, f'dropping {100 * drop_frac:.0f}% of input'
        else:
            status.level, status.message = DiagnosticStatus.OK, 'ok'
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
