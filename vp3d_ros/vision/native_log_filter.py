"""Keep MediaPipe's non-actionable native log lines off stderr.

MediaPipe (absl logging in C++) and TensorFlow Lite print lines such as
``inference_feedback_manager.cc:114] Feedback manager requires ...`` and ``All log messages
before absl::InitializeLog() ...`` on every start, straight to file descriptor 2: neither
``GLOG_minloglevel`` nor ``TF_CPP_MIN_LOG_LEVEL`` nor Python's logging reach them. So fd 2
is routed through a small filter process that drops exactly those lines and passes every
other byte on unchanged. A separate process, not a thread: if this process dies in native
code, the filter still forwards the last lines (a [FATAL] message, faulthandler's stacks)
before it sees end-of-file. It runs in its own session, so a Ctrl-C in the terminal does not
stop it before this process has printed its last words.

``VP3D_VERBOSE_MEDIAPIPE=1`` in the environment turns the filter off (everything shown).
"""
from __future__ import annotations

import atexit
import os
import subprocess
import sys

VERBOSE_ENV = 'VP3D_VERBOSE_MEDIAPIPE'

# Whole lines that tell a user nothing they can act on. ERROR and FATAL lines always pass.
NOISE = (
    r'WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR',
    r'INFO: (Created TensorFlow Lite XNNPACK delegate for CPU|Initialized TensorFlow Lite '
    r'runtime)\.',
    r'I\d{4} [\d:.]+ +\d+ [\w.]+:\d+\] .*',  # absl INFO lines
    r'W\d{4} [\d:.]+ +\d+ (inference_feedback_manager|landmark_projection_calculator)\.cc:\d+\] .*',
)

# The filter process: stdin -> stdout without the noise lines. A line ends at '\n' or at a
# '\r' (progress bars redraw with '\r'); a line still open after 50 ms is passed on as it is
# (absl writes each line whole, so it is not noise).
_FILTER = r'''
import os, re, select, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
noise = re.compile(b'(?:' + b'|'.join(p.encode() for p in sys.argv[1:]) + b')\r?\n?\Z')
ends = re.compile(rb'(?<=\n)|(?<=\r)(?!\n)')

def out(data):
    try:
        os.write(1, data)
    except OSError:
        pass

buf = b''
while True:
    if buf and not select.select([0], [], [], 0.05)[0]:
        out(buf)
        buf = b''
        continue
    chunk = os.read(0, 65536)
    if not chunk:
        break
    parts = ends.split(buf + chunk)
    buf = parts.pop()
    for line in parts:
        if not noise.match(line):
            out(line)
out(buf)
'''

_state = {}


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, '').strip().lower() in ('1', 'true', 'yes', 'on')


def installed() -> bool:
    """Whether this process's fd 2 currently goes through the filter."""
    pipe = _state.get('pipe')
    if pipe is None:
        return False
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == pipe


def filter_native_stderr() -> bool:
    """Route fd 2 through the noise filter (once per process); False where it is off
    (``VP3D_VERBOSE_MEDIAPIPE=1``) or cannot be set up. Call before importing mediapipe."""
    if verbose():
        return False
    if _state:
        return installed()
    _state['tried'] = True
    try:
        sys.stderr.flush()
        orig = os.dup(2)
    except (OSError, ValueError, AttributeError):
        return False
    try:
        r, w = os.pipe()
        proc = subprocess.Popen([sys.executable, '-I', '-S', '-c', _FILTER, *NOISE], stdin=r,
                                stdout=orig, stderr=orig, start_new_session=True)
    except OSError:
        os.close(orig)
        return False
    os.close(r)
    st = os.fstat(w)
    os.dup2(w, 2)
    os.close(w)
    _state.update(pipe=(st.st_dev, st.st_ino), orig=orig, proc=proc)
    atexit.register(_restore)
    return True


def _restore(timeout: float = 2.0) -> None:
    """At exit: fd 2 back to the original (if nobody else replaced it meanwhile), so the
    filter sees end-of-file, and wait for it to pass on the last lines."""
    if not installed():
        return
    try:
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass
    os.dup2(_state['orig'], 2)
    try:
        _state['proc'].wait(timeout)
    except subprocess.TimeoutExpired:  # a child process still holds the pipe: let it be
        pass
