"""/diagnostics for rig operators: per node input rate, processing time, drops, errors and
any extra values a node adds (e.g. the lifter's window fill).

Every status carries the same keys from the first publication on (``input_rate_hz``,
``received``, ``processed``, ``dropped``, ``errors``, ``persons``, ``processing_ms_mean``,
``processing_ms_p99``; 'n/a' until something was processed), so monitors can rely on them.
The timer runs on the steady clock: diagnostics keep coming under ``use_sim_time`` with no
/clock, which is exactly when an operator needs them.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Dict, Optional

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

from .common import steady_timer


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
        self._fault: Optional[str] = None
        self._warning: Optional[str] = None
        self.pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.timer = steady_timer(node, period_s, self.publish)

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

    def fault(self, message: Optional[str]):
        """A lasting failure (e.g. the recorder's disk is full): status ERROR with this text."""
        self._fault = message

    def warn(self, message: Optional[str]):
        """A lasting degraded state (e.g. waiting for /clock): status WARN with this text."""
        self._warning = message

    def values(self) -> Dict[str, str]:
        now = time.monotonic()
        with self._lock:
            rate = self._window_received / max(1e-9, now - self._window_start)
            self._window_start, self._window_received = now, 0
            times = sorted(self._times)
            counts = dict(self.counts)
        values = {'input_rate_hz': f'{rate:.2f}', **{k: str(v) for k, v in counts.items()}}
        values['processing_ms_mean'] = f'{1e3 * sum(times) / len(times):.2f}' if times else 'n/a'
        values['processing_ms_p99'] = (
            f'{1e3 * times[min(len(times) - 1, int(0.99 * len(times)))]:.2f}' if times else 'n/a')
        if self.extra:
            try:
                values.update({k: str(v) for k, v in self.extra().items()})
            except Exception as e:  # noqa: BLE001 - diagnostics must not take the node down
                values['extra_error'] = f'{type(e).__name__}: {e}'
        return values

    def publish(self):
        values = self.values()
        counts = {k: int(values[k]) for k in self.counts}
        status = DiagnosticStatus(name=self.name, hardware_id=self.node.get_fully_qualified_name())
        drop_frac = counts['dropped'] / max(1, counts['received'])
        if self._fault:
            status.level, status.message = DiagnosticStatus.ERROR, self._fault
        elif counts['errors'] and counts['processed'] == 0:
            status.level, status.message = DiagnosticStatus.ERROR, 'no frame processed'
        elif self._warning:
            status.level, status.message = DiagnosticStatus.WARN, self._warning
        elif drop_frac > 0.5:
            status.level = DiagnosticStatus.WARN
            status.message = f'dropping {100 * drop_frac:.0f}% of input'
        else:
            status.level, status.message = DiagnosticStatus.OK, 'ok'
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self.pub.publish(msg)
