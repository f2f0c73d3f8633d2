"""The package as colcon builds it, with the README's commands: install layout, installed
executables (found by the tests as ros2 run finds them), colcon test."""
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conftest import REPO

BIN = os.path.dirname(sys.executable)
COLCON = os.path.join(BIN, 'colcon')
EXECUTABLES = ['vp3d-lift', 'vp3d-export', 'vp3d-offline', 'offline', 'vp3d-make-pose-task', 'pose2d_node', 'lifter_node',
               'recorder_node', 'video_source']


def test_package_xml_is_format3_ament_python():
    root = ET.parse(os.path.join(REPO, 'package.xml')).getroot()
    assert root.get('format') == '3' and root.findtext('name') == 'vp3d_ros'
    assert root.find('export/build_type').text == 'ament_python'
    deps = {e.text for e in root.findall('exec_depend')}
    assert {'rclpy', 'sensor_msgs', 'std_msgs', 'geometry_msgs', 'visualization_msgs'} <= deps
    assert root.findall('test_depend')


@pytest.fixture(scope='module')
def colcon_ws(tmp_path_factory):
    if not os.path.exists(COLCON):
        pytest.fail('colcon is not installed in the environment (scripts/setup_env.sh)')
    ws = tmp_path_factory.mktemp('colcon_ws')
    src = ws / 'src' / 'vp3d_ros'
    src.parent.mkdir()
    ignore = shutil.ignore_patterns('.venv', '.git', 'build', 'install', 'log', '__pycache__',
                                    '*.egg-info', '.pytest_cache')
    shutil.copytree(REPO, src, ignore=ignore)
    env = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get('PATH', ''))
    env.pop('AMENT_PREFIX_PATH', None)  # only this workspace's setup.bash says where it is
    # The README's command (colcon-common-extensions: package selection, setup.bash).
    r = subprocess.run([COLCON, 'build', '--packages-select', 'vp3d_ros'], cwd=ws, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (ws / 'install' / 'setup.bash').is_file(), 'colcon wrote no install/setup.bash'
    return ws, env


def sourced(ws, env, command, timeout=300):
    """``command`` in bash after ``source install/setup.bash``, as a user runs it."""
    return subprocess.run(['bash', '-c', f'source install/setup.bash && {command}'], cwd=ws,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_tests_find_node_executables_like_ros2_run(monkeypatch):
    """Without an ament index naming vp3d_ros (the pinned .venv), the venv's bin folder."""
    from ros_harness import node_executable
    monkeypatch.delenv('AMENT_PREFIX_PATH', raising=False)
    if not os.path.exists(os.path.join(BIN, 'lifter_node')):
        pytest.skip('no console scripts beside this Python (not the pip-installed .venv)')
    for exe in ('pose2d_node', 'lifter_node', 'recorder_node', 'video_source'):
        assert node_executable(exe) == os.path.join(BIN, exe)
    with pytest.raises(FileNotFoundError, match='no_such_node'):
        node_executable('no_such_node')


def test_colcon_build_layout(colcon_ws):
    ws, env = colcon_ws
    inst = ws / 'install' / 'vp3d_ros'
    share = inst / 'share' / 'vp3d_ros'
    assert (share / 'package.xml').is_file()
    assert (inst / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'vp3d_ros').is_file()
    assert list((share / 'launch').glob('*.launch.py')), 'launch files not installed'
    assert list((share / 'config').glob('*.yaml')), 'config files not installed'
    for exe in EXECUTABLES:
        assert os.access(inst / 'lib' / 'vp3d_ros' / exe, os.X_OK), f'lib/vp3d_ros/{exe} missing'
    site = next((inst / 'lib').glob('python3*/site-packages'))
    assert (site / 'vp3d_ros' / 'data' / 'balancing_cam01.mp4').is_file()
    # The installed executable runs from the install tree, not from the source checkout.
    r = sourced(ws, env, 'install/vp3d_ros/lib/vp3d_ros/vp3d-lift --help && python -c '
                '"import vp3d_ros; print(vp3d_ros.__file__)"', 60)
    assert r.returncode == 0 and '--filter-widths' in r.stdout, r.stdout + r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith(str(site)), r.stdout
    # The tests' harness starts the installed nodes, as `ros2 run vp3d_ros <exe>` would.
    r = sourced(ws, env, 'cd src/vp3d_ros/test && python -c "from ros_harness import '
                'node_executable as f; print(f(\'lifter_node\'))"', 60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.strip() == str(inst / 'lib' / 'vp3d_ros' / 'lifter_node')


def test_colcon_test_runs_the_suite(colcon_ws):
    """README: colcon test --packages-select vp3d_ros && colcon test-result --verbose (on two
    quick tests here; CI's scripts/colcon_workspace_test.sh runs the node tests so)."""
    ws, env = colcon_ws
    r = sourced(ws, env, 'colcon test --packages-select vp3d_ros --return-code-on-test-failure '
                "--pytest-args -k 'normalisation or layouts_are_consistent' "
                'test/test_lifter_core.py')
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = sourced(ws, env, 'colcon test-result --verbose', 60)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = r.stdout.strip().splitlines()[-1]
    assert '0 errors' in summary and '0 failures' in summary, r.stdout
    tests = int(summary.split('tests')[0].split()[-1].replace(',', '')) if 'tests' in summary else 0
    assert tests >= 2, r.stdout
