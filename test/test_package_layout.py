"""The package as colcon builds it: install layout, installed executables, colcon test."""
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
    r = subprocess.run([COLCON, 'build', '--base-paths', 'src'], cwd=ws, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return ws, env


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
    env = dict(env, PYTHONPATH=str(site))
    r = subprocess.run([str(inst / 'lib' / 'vp3d_ros' / 'vp3d-lift'), '--help'], cwd=ws,
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and '--filter-widths' in r.stdout


def test_colcon_test_runs_the_suite(colcon_ws):
    ws, env = colcon_ws
    r = subprocess.run([COLCON, 'test', '--base-paths', 'src', '--pytest-args',
                        '-k', 'normalisation or layouts_are_consistent', 'test/test_lifter_core.py'],
                       cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = subprocess.run([COLCON, 'test-result', '--all', '--verbose'], cwd=ws, env=env,
                       capture_output=True, text=True, timeout=60)
    summary = r.stdout.strip().splitlines()[-1]
    assert '0 errors' in summary and '0 failures' in summary, r.stdout
    tests = int(summary.split('tests')[0].split()[-1].replace(',', '')) if 'tests' in summary else 0
    assert tests >= 2, r.stdout
