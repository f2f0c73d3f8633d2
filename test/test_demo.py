"""The demo's summary says what happened: drops only when there were some, a reason for a
live/offline difference only when there is one."""
import numpy as np

from vp3d_ros.apps.demo import LIVE_OFFSET_S, agreement, agreement_line, live_line
from vp3d_ros.io.records import Track
from vp3d_ros.core.skeletons import H36M17


def track(stamps, positions):
    return Track('/cam01/skeleton_3d', 0, H36M17.joints, np.asarray(stamps, float), positions,
                 np.ones(positions.shape[:2]))


def test_live_line():
    none = live_line('bag', 100, 100, 100)
    assert 'none dropped' in none and 'were dropped' not in none
    some = live_line('bag', 100, 98, 98)
    assert '2 of the 100 frames the camera sent were dropped' in some
    assert 'without a 3D pose' not in some
    assert '3 2D frames without a 3D pose' in live_line('bag', 100, 98, 95)
    assert 'dropped' not in live_line('bag', None, 98, 98)  # the camera's log said nothing


def test_agreement_line_on_real_track_matching():
    fps = 60.0
    pos = np.random.default_rng(0).normal(size=(20, 17, 3))
    offline = track(np.arange(20) / fps, pos)
    keep = [i for i in range(20) if i not in (5, 6)]  # live lost two frames
    live = track(LIVE_OFFSET_S + np.array(keep) / fps, pos[keep].copy())
    ag = agreement(live, offline, fps)
    assert ag['frames'] == 18 and ag['max_mm'] == 0.0
    same = agreement_line(ag, dropped=True)
    assert 'identical' in same and 'dropped' not in same and 'differ' not in same
    live.positions[3] += 0.01  # 10 mm on one frame
    ag = agreement(live, offline, fps)
    assert abs(ag['max_mm'] - 1000 * np.sqrt(3) * 0.01) < 1e-6
    assert 'differ' in agreement_line(ag, dropped=False)
    assert 'dropped' not in agreement_line(ag, dropped=False)
    assert 'dropped frames' in agreement_line(ag, dropped=True)
    assert 'no frames in common' in agreement_line({'frames': 0}, dropped=False)


def test_demo_offline_half_runs_on_the_bundled_clip(tmp_path, capsys):
    """`make demo`'s module end to end without its live half (real MediaPipe, the shipped
    lifter, the bundled clip and calibration): the bag, the exports in camera and world axes
    and the pictures are written, and the summary says so."""
    from vp3d_ros.apps.demo import main
    out = tmp_path / 'demo'
    assert main(['--skip-live', '--out', str(out)]) == 0
    said = capsys.readouterr().out
    assert 'offline bag' in said and '100 frames, 0 without a person' in said
    names = {p.name for p in out.iterdir()}
    assert 'offline_landmarks' in names and 'demo_strip.png' in names
    assert 'demo_world_strip.png' in names
    assert any(n.endswith('_skeleton_3d_world_p0.trc') for n in names)
    assert any(n.endswith('.csv') for n in names)
