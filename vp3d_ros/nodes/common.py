"""What every vp3d_ros node shares: start-up/shutdown, parameters, rate-limited logging."""
from __future__ import annotations

import sys
import time
from typing import Any, Callable, Dict

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rcl_interfaces.msg import ParameterDescriptor


class ConfigError(RuntimeError):
    """Configuration that cannot work: the node refuses to start and says what to fix."""


def declare(node: Node, name: str, default: Any, description: str, dynamic: bool = False):
    """Declare a documented parameter and return its value."""
    desc = ParameterDescriptor(description=description, dynamic_typing=dynamic)
    return node.declare_parameter(name, default, desc).value


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


class Throttle:
    """At most one log line per key per period: a broken stream must not flood the log."""

    def __init__(self, period_s: float = 5.0):
        self.period_s = period_s
        self._last: Dict[str, float] = {}
        self.suppressed: Dict[str, int] = {}

    def __call__(self, key: str) -> bool:
        now = time.monotonic()
        if now - self._last.get(key, -1e18) >= self.period_s:
            self._last[key] = now
            return True
        self.suppressed[key] = self.suppressed.get(key, 0) + 1
        return False


def run_node(factory: Callable[[], Node], args=None) -> int:
    """rclpy.init, build the node, spin until SIGINT/SIGTERM, then close it cleanly.

    A node whose constructor raises :class:`ConfigError` exits with status 2 after logging
    the reason; the node's ``close()`` (if any) always runs on shutdown, so recorders
    finish their bags on SIGINT and SIGTERM alike.
    """
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = factory()
        rclpy.spin(node)
    except ConfigError as e:
        print(f'[FATAL] {e}', file=sys.stderr, flush=True)
        code = 2
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            close = getattr(node, 'close', None)
            if close is not None:
                close()
            node.destroy_node()
        rclpy.try_shutdown()
    return code
