"""What every vp3d_ros node shares: start-up/shutdown, parameters, rate-limited logging."""
from __future__ import annotations

import faulthandler
import gc
import os
import re
import signal
import sys
import time
import traceback
from collections import OrderedDict, deque
from typing import Any, Callable, Deque, Dict, Optional, Sequence

import rclpy
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rcl_interfaces.msg import ParameterDescriptor

from ..core.allocator import keep_large_buffers


class ConfigError(RuntimeError):
    """Configuration that cannot work: the node refuses to start and says what to fix."""


EXIT_CONFIG = 2  # exit status of a node that refused its configuration


def declare(node: Node, name: str, default: Any, description: str, dynamic: bool = False):
    """Declare a documented parameter and return its value.

    A value of the wrong type (``-p max_gap_s:=abc``) is a :class:`ConfigError` naming the
    parameter and the expected type, not a traceback.
    """
    desc = ParameterDescriptor(description=description, dynamic_typing=dynamic)
    try:
        return node.declare_parameter(name, default, desc).value
    except ParameterException as e:
        raise ConfigError(f'{node.get_name()}: parameter {name!r}: {e} (expected '
                          f'{type(default).__name__}, e.g. {default!r}; {description})') from e


def declare_options(node: Node, cls, only: Sequence[str] = (), **defaults):
    """Declare every field of an options class (:mod:`vp3d_ros.core.options`), or the
    ``only`` ones (the others keep their defaults), as a documented parameter of the same
    name -> an instance; a bad value is a ConfigError.

    ROS has no empty typed list, so an empty tuple default is declared as ``[0]`` (zeros are
    dropped when read); fields with choices take any type (``causal:=true`` arrives as a
    bool) and are read as lower-case text."""
    from ..core.options import fields_of
    values = {}
    for f in fields_of(cls):
        if only and f.name not in only:
            continue
        default, text = defaults.get(f.name, f.default), f.metadata['help']
        if isinstance(default, tuple):
            v = declare(node, f.name, [int(x) for x in default] or [0], text)
            values[f.name] = tuple(int(x) for x in v if x)
        elif f.metadata['choices']:
            values[f.name] = str(declare(node, f.name, default, text, dynamic=True)).lower()
        else:
            values[f.name] = declare(node, f.name, default, text)
    try:
        return cls(**values)
    except ValueError as e:
        raise ConfigError(f'{node.get_name()}: {e}') from e


def offered_qos(node: Node, topic: str):
    """(reliability, durability) that matches every publisher of ``topic`` and gets what they
    keep (reliable + transient-local only when all of them offer it); None: no publisher yet.

    Why: DDS matching between processes can lag a stream by a second or more; against a
    transient-local publisher (pose2d) the frames sent meanwhile then come from its history
    instead of being lost, and a best-effort or volatile publisher still matches."""
    from rclpy.qos import DurabilityPolicy, ReliabilityPolicy
    infos = node.get_publishers_info_by_topic(topic)
    if not infos:
        return None
    reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
    latched = reliable and all(
        i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
    return (ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
            DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class FollowingSubscription:
    """A subscription made once ``topic`` has a publisher, with the QoS its publishers offer
    (:func:`offered_qos`), and made again, weaker, when a publisher that offers less appears
    (it would not match otherwise). Call :meth:`update` from a timer."""

    def __init__(self, node: Node, msg_type, topic: str, callback, depth: int = 50):
        self.node, self.msg_type, self.topic = node, msg_type, topic
        self.callback, self.depth = callback, depth
        self.sub = None
        self.qos = None  # (reliability, durability) subscribed with

    def update(self) -> Optional[str]:
        """Subscribe or downgrade if needed; a line saying how, or None if nothing changed."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        want = offered_qos(self.node, self.topic)
        if want is None:
            return None
        if self.sub is not None:
            have = self.qos
            weaker = (have[0] == ReliabilityPolicy.RELIABLE and want[0] != have[0]) or \
                (have[1] == DurabilityPolicy.TRANSIENT_LOCAL and want[1] != have[1])
            if not weaker:
                return None
            self.node.destroy_subscription(self.sub)
        self.qos = want
        self.sub = self.node.create_subscription(
            self.msg_type, self.topic, self.callback,
            QoSProfile(depth=self.depth, reliability=want[0], durability=want[1]))
        return (f'listening on {self.topic} ('
                f'{"reliable" if want[0] == ReliabilityPolicy.RELIABLE else "best-effort"}, '
                f'{"transient-local" if want[1] == DurabilityPolicy.TRANSIENT_LOCAL else "volatile"}'
                ', as its publishers offer)')


def parameters_snapshot(node: Node) -> Dict[str, Any]:
    """All parameters with their values, for bag metadata and diagnostics."""
    return {name: node.get_parameter(name).value for name in sorted(node._parameters)}


def message_class(msgtype: str):
    """'sensor_msgs/msg/PointCloud2' -> the generated class (rosidl_runtime_py's
    get_message, which the PyPI wheels lack)."""
    import importlib
    try:
        pkg, kind, name = msgtype.split('/')
        return getattr(importlib.import_module(f'{pkg}.{kind}'), name)
    except (ValueError, ImportError, AttributeError) as e:
        raise ValueError(f'unknown message type {msgtype!r}') from e


def steady_timer(node: Node, period_s: float, callback):
    """A timer on the steady clock: housekeeping (diagnostics, discovery, flushing, idle
    detection) must run under ``use_sim_time`` even when nobody publishes /clock."""
    return node.create_timer(period_s, callback, clock=Clock(clock_type=ClockType.STEADY_TIME))


def problem_kind(text: str, limit: int = 48) -> str:
    """A log key for a kind of problem: ``text`` without what varies from message to message
    (quoted strings, bracketed lists and parentheses, numbers), cut to ``limit`` characters.
    Keyed by the full text, a stream sending a new encoding string (or size, or field list)
    on every frame got one log line per frame."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"|\[[^\]]*\]|\([^)]*\)|\d+", '#', str(text))
    return text[:limit]


class Throttle:
    """At most one log line per key per period, and at most ``max_lines`` lines per period
    over all keys: a broken stream must not flood the log.

    Keys should name a kind of problem (:func:`problem_kind`), not carry the varying text;
    the key table keeps the ``max_keys`` most recently used keys (least recently used
    forgotten first), so even keys that do vary cannot grow memory, and the overall budget
    bounds the lines they give. Call it to ask whether a line may be logged now, or use
    :meth:`log`, which also says how many lines of that kind were held back since the last one.
    """

    def __init__(self, period_s: float = 5.0, max_keys: int = 64, max_lines: int = 20):
        self.period_s = period_s
        self.max_keys = max_keys
        self.max_lines = max_lines
        self._last: 'OrderedDict[str, float]' = OrderedDict()
        self.suppressed: Dict[str, int] = {}
        self._recent: Deque[float] = deque()  # times of the lines let through, last period
        self.held_over_budget = 0  # lines held back by the overall budget

    def __call__(self, key: str) -> bool:
        now = time.monotonic()
        last = self._last.get(key)
        while self._recent and now - self._recent[0] >= self.period_s:
            self._recent.popleft()
        if last is None or now - last >= self.period_s:
            if len(self._recent) < self.max_lines:
                self._last[key] = now
                self._last.move_to_end(key)
                self._recent.append(now)
                while len(self._last) > self.max_keys:
                    old, _ = self._last.popitem(last=False)
                    self.suppressed.pop(old, None)
                return True
            self.held_over_budget += 1
            if last is None:  # not in the table: nothing to count it against
                return False
        self._last.move_to_end(key)
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        return False

    def log(self, log_fn: Callable[[str], Any], key: str, text: str) -> bool:
        """``log_fn``: a bound rclpy logger method (``logger.warning``...)."""
        previous = self._last.get(key)
        if not self(key):
            return False
        held = self.suppressed.pop(key, 0)
        if held:  # something was held back, so a line was printed before
            since = self._last[key] - previous
            text += f' [{held} more like this in the {since:.0f} s since the last such line]'
        # rclpy ties a severity to each call site, so every severity gets its own line here.
        logger, level = getattr(log_fn, '__self__', None), getattr(log_fn, '__name__', '')
        if logger is None:
            log_fn(text)
        elif level == 'error':
            logger.error(text)
        elif level in ('warning', 'warn'):
            logger.warning(text)
        elif level == 'info':
            logger.info(text)
        elif level == 'fatal':
            logger.fatal(text)
        else:
            logger.debug(text)
        return True


GRACE_S = 2.0  # further signals this soon after the first are the same request
DRAIN_MAX_S = 2.0  # longest shutdown drain: with the ~2.5 s a torch process takes to exit,
# still below the 5 s ros2 launch waits before it sends SIGTERM


class _Stop:
    """SIGINT/SIGTERM as a flag: the node leaves its loop with the ROS context still up, so
    ``close()`` can still publish owed poses and the recorder can take what already arrived.

    ``ros2 launch`` without a terminal (a script, systemd, CI, ``timeout``) delivers SIGINT
    twice: the process group's copy and the one launch forwards to each node. So a signal
    within ``grace_s`` of the first is the same request and is ignored; a later one cuts the
    drain short (close() still runs), and one while close() runs interrupts it. No signal is
    ever raised inside a callback, where it printed a traceback and cut the drain."""

    def __init__(self, grace_s: float = GRACE_S):
        self.grace_s = grace_s
        self.requested = False  # the first signal: drain, then close
        self.abort = False  # a signal after the grace period: stop draining now
        self.closing = False  # close() runs: a signal after the grace period interrupts it
        self.done = False  # close() returned: the node is going away, signals are moot
        self.repeats = 0  # signals ignored as repeats of the first
        self._first = None
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame):
        now = time.monotonic()
        if not self.requested:
            self.requested, self._first = True, now
        elif self.done or now - self._first < self.grace_s:
            self.repeats += 1
        elif self.closing:
            raise KeyboardInterrupt
        else:
            self.abort = True

    def restore(self):
        for s, h in self._old.items():
            signal.signal(s, h)


def make_executor(context):
    """rclpy's C++ EventsExecutor where the distro has it (Jazzy and later): it dispatches a
    message about 0.7 ms sooner than the Python SingleThreadedExecutor, which rebuilds its
    wait set (every timer, subscription and parameter service) for each callback; that is
    per hop of a camera frame through the pipeline. ``VP3D_EXECUTOR=single`` forces the
    classic one."""
    if os.environ.get('VP3D_EXECUTOR', 'events') != 'single':
        try:
            from rclpy.experimental import EventsExecutor
            return EventsExecutor(context=context)
        except ImportError:  # Humble
            pass
    return SingleThreadedExecutor(context=context)


def _inputs_alive(node: Node) -> bool:
    """Whether a topic of the node's ``drain_topics()`` (if it has that method) still has a
    publisher: upstream nodes stopping at the same time may still send their last messages
    (pose2d its last keypoints, the lifter its owed poses from close())."""
    topics = getattr(node, 'drain_topics', None)
    if topics is None:
        return False
    try:
        return any(node.count_publishers(t) for t in topics())
    except Exception:  # noqa: BLE001 - graph unavailable (context going down): stop waiting
        return False


def _spin(node: Node, stop: _Stop, drain_s: float = 0.3, settle_s: float = 0.2,
          max_drain_s: float = DRAIN_MAX_S) -> None:
    """Spin until a signal or shutdown; an exception escaping a callback is logged (with its
    traceback, rate-limited) and the node keeps serving instead of dying with it.

    After the signal the node drains: it serves for ``drain_s``, and, for a node with
    ``drain_topics()``, until those topics' publishers have left plus ``settle_s`` (what they
    sent before leaving is still arriving), at most ``max_drain_s`` or until a later signal."""
    executor = make_executor(node.context)
    executor.add_node(node)
    throttle = Throttle(10.0)
    drain_until = drain_limit = quiet_since = None
    try:
        while node.context.ok():
            if stop.requested:
                now = time.monotonic()
                if drain_until is None:
                    drain_until, drain_limit = now + drain_s, now + max_drain_s
                if _inputs_alive(node):
                    quiet_since = None
                elif quiet_since is None:
                    quiet_since = now
                settled = quiet_since is not None and now - quiet_since >= settle_s
                if stop.abort or now >= drain_limit or (now >= drain_until and settled):
                    break
            try:
                executor.spin_once(timeout_sec=0.05 if stop.requested else 0.1)
            except (KeyboardInterrupt, ExternalShutdownException):
                raise
            except Exception as e:  # noqa: BLE001 - keep the node alive, say what broke
                diag = getattr(node, 'diag', None)
                if diag is not None:
                    diag.error()
                throttle.log(node.get_logger().error, type(e).__name__,
                             f'callback failed, node continues: {type(e).__name__}: {e}\n'
                             + traceback.format_exc(limit=6))
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=1.0)


def run_node(factory: Callable[[], Node], args=None) -> int:
    """rclpy.init, build the node, spin until SIGINT/SIGTERM, then close it cleanly.

    A node whose constructor raises :class:`ConfigError` exits with status 2 after logging
    the reason (before it subscribes to anything, so no data is taken and lost); the
    node's ``close()`` (if any) always runs on shutdown, while the context is still up, so
    recorders finish their bags and lifters publish owed poses on SIGINT and SIGTERM alike.
    A node may set ``exit_code`` (e.g. the recorder after a write error) for its exit status.
    A node that refuses its configuration ends the process at once (:func:`exit_process`):
    it owes nothing, and tearing its half-built DDS participant down, whether by
    ``destroy_node`` or by the interpreter's exit, sometimes died of SIGSEGV on a cold
    start instead of exiting with status 2.
    A crash in native code prints the Python stacks to the node's log (faulthandler).
    """
    faulthandler.enable()
    keep_large_buffers()  # camera frames: reuse heap buffers instead of faulting in new pages
    stop = _Stop()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = None
    code = 0
    try:
        node = factory()
        # What start-up built (torch, MediaPipe, a model: ~1e5 objects) lives as long as the
        # node: out of the collector's sight, a full collection no longer walks it mid-frame
        # (15-20 ms in the fusion node, a p99 outlier every few seconds).
        gc.collect()
        gc.freeze()
        _spin(node, stop)
    except ConfigError as e:
        print(f'[FATAL] {e}', file=sys.stderr, flush=True)
        exit_process(EXIT_CONFIG)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, 'close', None)
            if close is not None:
                stop.closing = True
                try:
                    close()
                    _wait_acked(node)
                except KeyboardInterrupt:
                    print(f'[WARN] {node.get_name()}: closing interrupted by a further signal',
                          file=sys.stderr, flush=True)
                    code = code or 1
                except Exception as e:  # noqa: BLE001 - still shut down cleanly
                    print(f'[ERROR] closing {node.get_name()}: {type(e).__name__}: {e}',
                          file=sys.stderr, flush=True)
                    code = code or 1
            stop.done = True
            code = code or int(getattr(node, 'exit_code', 0) or 0)
            node.destroy_node()
        stop.done = True
        rclpy.try_shutdown()
        # The process is about to exit: the handler stays (a late repeat of the signal is
        # ignored, not a KeyboardInterrupt traceback during interpreter shutdown).
    return code


def camera_names(node: str, cameras, min_cameras: int = 1) -> list:
    """The ``cameras`` parameter of a rig node as distinct namespaces; else a ConfigError."""
    names = [c.strip().strip('/') for c in cameras if c.strip().strip('/')]
    if len(names) < min_cameras or len(set(names)) != len(names):
        what = 'at least two distinct' if min_cameras == 2 else 'distinct'
        raise ConfigError(f'{node}: cameras must name {what} camera namespaces, got '
                          f'{list(cameras)}')
    return names


def rig_cameras(node: str, cameras, calibration: str, min_cameras: int = 1):
    """(names, RigCameras) of a node serving calibrated cameras (world, fusion): distinct
    namespaces, a calibration file that has each of them; else a ConfigError naming why."""
    from ..geometry.calibration import CalibrationError, RigCameras
    names = camera_names(node, cameras, min_cameras)
    if not calibration:
        raise ConfigError(f'{node}: parameter calibration is required (a calibration file '
                          'with every camera)')
    try:
        return names, RigCameras.from_file(calibration, names)
    except CalibrationError as e:
        raise ConfigError(f'{node}: {e}') from None


def exit_process(code: int) -> None:
    """End a node process that has shut down cleanly, without the interpreter's teardown.

    Everything the node owes is done by then (bag closed, owed poses acknowledged, rclpy
    shut down); what is left is freeing torch's and MediaPipe's native state, which took the
    lifter 2.3-2.7 s. ``ros2 launch`` sends SIGTERM 5 s after SIGINT, and a lifter that had
    just drained was measured exiting 3.3-4.9 s after it: close enough to get the warning."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed pipe: nothing more to say anyway
            pass
    os._exit(int(code))


def _wait_acked(node: Node, budget_s: float = 1.0) -> None:
    """Until the readers acknowledged what the node published last (close() publishes owed
    poses): destroying a writer drops samples not yet delivered. At most ``budget_s``."""
    from rclpy.duration import Duration
    from rclpy.qos import ReliabilityPolicy
    end = time.monotonic() + budget_s
    for pub in list(node.publishers):
        left = end - time.monotonic()
        if left <= 0:
            return
        if (pub.topic_name in ('/rosout', '/parameter_events')
                or pub.qos_profile.reliability != ReliabilityPolicy.RELIABLE):
            continue
        pub.wait_for_all_acked(Duration(nanoseconds=int(left * 1e9)))
