"""The terminal's one-line progress of vp3d-offline."""
from __future__ import annotations

import sys
import time


class Progress:
    """A one-line \\r progress display on a terminal (nothing when the stream is not a tty)."""

    def __init__(self, enabled: bool, stream=None):
        self.stream = stream or sys.stderr
        self.on = bool(enabled) and bool(getattr(self.stream, 'isatty', lambda: False)())
        self._last = 0.0
        self._width = 0

    def update(self, label: str, done: int, total: int, fps: float, force: bool = False):
        if not self.on:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        if total:
            frac = min(1.0, done / total)
            bar = '#' * int(24 * frac) + '-' * (24 - int(24 * frac))
            eta = f' ETA {max(0.0, total - done) / fps:.0f} s' if fps > 0 else ''
            text = f'{label} [{bar}] {done}/{total} frames {fps:.1f} fps{eta}'
        else:
            text = f'{label} {done} frames {fps:.1f} fps'
        self.stream.write('\r' + text.ljust(self._width))
        self._width = len(text)
        self.stream.flush()

    def close(self):
        if self.on and self._width:
            self.stream.write('\r' + ' ' * self._width + '\r')
            self.stream.flush()
            self._width = 0
