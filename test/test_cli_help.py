"""Every command-line option says what it does; the help texts carry what a first-time user
needs next (columns, examples, where a keypoints .npy comes from)."""
import re
import subprocess
import sys

import pytest

from conftest import REPO
from vp3d_ros.cli import export, lift, offline

PARSERS = {'vp3d-offline': offline.build_parser, 'vp3d-export': export.build_parser,
           'vp3d-lift': lift.build_parser}


def undescribed(help_text: str):
    """Options whose --help entry has no description (argparse prints the invocation alone)."""
    lines = help_text.split('\n')
    bad = []
    for i, line in enumerate(lines):
        m = re.match(r'  (-\S.*?)(?:  +(\S.*))?$', line)
        if not m or line.startswith('  -h, --help'):
            continue
        follow = lines[i + 1] if i + 1 < len(lines) else ''
        if not m.group(2) and not re.match(r' {10,}\S', follow):
            bad.append(m.group(1).strip())
    return bad


@pytest.mark.parametrize('prog', sorted(PARSERS))
def test_every_option_is_described(prog):
    text = PARSERS[prog]().format_help()
    assert undescribed(text) == [], text


def test_rig_options_are_described():
    r = subprocess.run([sys.executable, '-m', 'vp3d_ros.apps.rig', '--help'], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '--bag-dir' in r.stdout and undescribed(r.stdout) == [], r.stdout


def test_the_checker_sees_a_missing_description():
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument('--bare')
    p.add_argument('--told', help='x ' * 60)
    assert undescribed(p.format_help()) == ['--bare BARE']


def test_help_texts_say_what_comes_next():
    exp = PARSERS['vp3d-export']().format_help()
    for needle in ('timestamp_s,landmark,x_m,y_m,z_m,visibility',
                   'timestamp_s,landmark,x_px,y_px,confidence', '--overwrite', 'Examples',
                   'vp3d-export session_landmarks --out-dir exports'):
        assert needle in exp, needle
    text = PARSERS['vp3d-lift']().format_help()
    assert 'vp3d-export' in text and '--include-2d' in text and '__positions' in text
    off = ' '.join(PARSERS['vp3d-offline']().format_help().split())  # unwrapped
    assert 'vp3d-export' in off and 'make process' in off
    assert '(default: symmetric)' in off and 'sqlite3 (.db3' in off
