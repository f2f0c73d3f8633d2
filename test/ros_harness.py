"""Real-DDS test harness: node processes in an isolated ROS domain and an in-test rclpy
client (publishers, collecting subscribers) spinning in a background thread."""
from __future__ import annotations

import atexit
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

from conftest import REPO

_counter = itertools.count()
PACKAGE = 'vp3d_ros'
# Clients not closed and node processes not stopped yet. A client still spinning when the
# interpreter exits aborts the whole pytest run ("terminate called without an active
# exception", exit -6, as colcon test saw): conftest fails the test that leaves one open.
_OPEN: list = []


def close_all() -> list:
    """Close every client and stop every node process still open; returns what was open."""
    leaked = list(_OPEN)
    for item in reversed(leaked):
        try:
            item.close() if isinstance(item, Client) else item.stop(timeout=10)
        except Exception:  # noqa: BLE001 - close the rest all the same
            pass
    return leaked


atexit.register(close_all)  # last line of defence; conftest already fails the leaking test


def node_executable(exe: str, package: str = PACKAGE) -> str:
    """Where ``ros2 run vp3d_ros <exe>`` finds a node: ``<prefix>/lib/vp3d_ros/<exe>`` under
    the package's prefix in the ament index (AMENT_PREFIX_PATH: colcon's
    ``install/vp3d_ros``, an apt ROS's ``/opt/ros/<distro>``), else the Python environment's
    bin folder (the pinned .venv, where ``pip install -e`` puts the console scripts)."""
    candidates = []
    try:
        from ament_index_python.packages import get_package_prefix
        candidates.append(os.path.join(get_package_prefix(package), 'lib', package, exe))
    except (ImportError, LookupError, OSError):  # no index, or the package is not in it
        pass
    candidates.append(os.path.join(os.path.dirname(sys.executable), exe))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(f'executable {exe!r} of {package} not found; looked at '
                            + ', '.join(candidates))


def unique_domain_id() -> int:
    """Distinct per test and per concurrently running suite (pid-based), within 1..200."""
    return 1 + (os.getpid() * 7 + next(_counter)) % 200


def ros_env(domain_id: int, log_dir: str) -> dict:
    env = dict(os.environ)
    env.update({
        'ROS_DOMAIN_ID': str(domain_id),
        'ROS_LOG_DIR': str(log_dir),
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'FASTDDS_DEFAULT_PROFILES_FILE': os.path.join(REPO, 'config', 'fastdds_shm_profile.xml'),
        'PYTHONUNBUFFERED': '1',
    })
    os.makedirs(log_dir, exist_ok=True)
    return env


def clean_dead_shared_memory() -> None:
    """Remove the Fast DDS shared-memory files of processes that died without closing them
    (SIGKILL): 17 MB per participant with our profile, left in /dev/shm until reboot. Uses
    Fast DDS's own ``fastdds shm clean`` (a file only goes when no live process holds its
    lock), loaded from the distro's tools folder: its CLI entry point needs psutil, for
    commands this does not use."""
    import contextlib
    import importlib.util
    import io
    prefixes = [sys.prefix] + os.environ.get('AMENT_PREFIX_PATH', '').split(os.pathsep)
    for prefix in filter(None, prefixes):
        path = os.path.join(prefix, 'tools', 'fastdds', 'shm', 'clean.py')
        if os.path.isfile(path):
            spec = importlib.util.spec_from_file_location('fastdds_shm_clean', path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            with contextlib.redirect_stdout(io.StringIO()):
                module.Clean().run(False)
            return


class NodeProcess:
    """A node started like `ros2 run vp3d_ros <exe> --ros-args ...`, output to a log file."""

    def __init__(self, exe: str, ros_args, env, log_path, preexec_fn=None):
        self.log_path = str(log_path)
        self._log = open(self.log_path, 'w')
        cmd = [node_executable(exe), '--ros-args', *map(str, ros_args)]
        try:
            self.proc = subprocess.Popen(cmd, env=env, stdout=self._log,
                                         stderr=subprocess.STDOUT, cwd=REPO,
                                         preexec_fn=preexec_fn)
        except BaseException:
            self._log.close()
            raise
        _OPEN.append(self)

    def log(self) -> str:
        """Readable after stop() too (which closes the handle)."""
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path) as f:
            return f.read()

    def wait_for_log(self, text: str, timeout: float = 60.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.log():
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def stop(self, sig=signal.SIGTERM, timeout: float = 20.0) -> int:
        try:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        finally:
            if self.proc.poll() is None:  # interrupted while waiting: leave nothing running
                self.proc.kill()
                self.proc.wait()
            self._log.close()
            if self in _OPEN:
                _OPEN.remove(self)
        if self.proc.returncode == -signal.SIGKILL:
            clean_dead_shared_memory()
        return self.proc.returncode


class Client:
    """In-test rclpy participant in the test's domain."""

    def __init__(self, domain_id: int):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        try:
            self.node = rclpy.create_node(f'vp3d_test_client_{domain_id}',
                                          context=self.context)
            self.executor = SingleThreadedExecutor(context=self.context)
            self.executor.add_node(self.node)
        except BaseException:
            rclpy.try_shutdown(context=self.context)
            raise
        self.received = defaultdict(list)
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._running = True
        self._thread.start()
        _OPEN.append(self)

    def _spin(self):
        while self._running and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def collect(self, msg_type, topic, qos=None, latched=False):
        """Keep every message of a topic. latched: transient-local reader, which also gets
        what a transient-local writer (keypoints, skeletons) sent before discovery finished."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        qos = qos or QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE,
                                durability=DurabilityPolicy.TRANSIENT_LOCAL if latched
                                else DurabilityPolicy.VOLATILE)

        def cb(msg, topic=topic):
            with self.lock:
                self.received[topic].append(msg)
        return self.node.create_subscription(msg_type, topic, cb, qos)

    def messages(self, topic):
        with self.lock:
            return list(self.received[topic])

    def wait_for(self, predicate, timeout=30.0, poll=0.02) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(poll)
        return False

    def wait_for_subscribers(self, publisher, n=1, timeout=30.0) -> bool:
        return self.wait_for(lambda: publisher.get_subscription_count() >= n, timeout)

    def close(self):
        """Idempotent: stop spinning, then destroy the node and shut the context down."""
        if self not in _OPEN:
            return
        _OPEN.remove(self)
        self._running = False
        self._thread.join(timeout=5)
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            self.rclpy.try_shutdown(context=self.context)


def stamps_ns(msgs):
    return [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in msgs]
