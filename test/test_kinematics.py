"""Joint angles with OpenSim (vp3d_ros.kinematics, vp3d-kinematics): real OpenSim, real files.

The OpenSim tests generate their own ground truth: the bundled model, scaled by known
factors, moved through known joint angles; its joint-centre markers are written to a TRC,
and the CLI must scale the model back and recover the angles. They skip only when the
optional ``opensim`` package is not importable (CI installs it).
"""
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from vp3d_ros.kinematics import markers as km

# find_spec, not import: importing the wheel rewrites LD_LIBRARY_PATH for every process the
# test session starts afterwards (vp3d_ros.kinematics.require_opensim puts it back)
HAVE_OPENSIM = importlib.util.find_spec('opensim') is not None

needs_opensim = pytest.mark.skipif(
    not HAVE_OPENSIM, reason='opensim not importable: `pip install --no-deps opensim==4.6` '
    '(scripts/setup_env.sh installs it)')

RATE = 30.0
STAND_S, MOVE_S = 1.0, 1.5
# the subject: the generic model with longer thighs and shanks, a narrower trunk, wider hips
SCALES = {'femur_r': 1.08, 'femur_l': 1.08, 'tibia_r': 1.05, 'tibia_l': 1.05,
          'torso': 0.9, 'head': 0.9, 'humerus_r': 0.95, 'humerus_l': 0.95}
PELVIS = (0.9, 0.9, 1.5)
HEADING = math.radians(-120)   # facing away from +X: turned to face +X before IK


def _truth(t: np.ndarray) -> dict:
    """Known coordinates (radians): standing still, then a squat-and-reach movement."""
    s = np.clip((t - STAND_S) / MOVE_S, 0, 1)
    bump = np.sin(np.pi * s) ** 2                          # 0 -> 1 -> 0
    swing = np.sin(2 * np.pi * s)
    return {
        'hip_flexion_r': np.radians(55) * bump + np.radians(10) * swing,
        'hip_flexion_l': np.radians(40) * bump - np.radians(10) * swing,
        'knee_angle_r': np.radians(80) * bump,
        'knee_angle_l': np.radians(65) * bump,
        'hip_adduction_r': np.radians(-8) * bump,
        'arm_flex_r': np.radians(60) * bump,
        'arm_flex_l': np.radians(30) * bump,
        'elbow_flex_r': np.radians(70) * bump,
        'elbow_flex_l': np.radians(40) * bump + np.radians(5),
        # the humerus's axial rotation, seen only with the elbow bent: its prior fades out
        'arm_rot_r': np.radians(45) * bump,
        'pelvis_rotation': HEADING + 0 * t,
        'pelvis_tx': 0.3 + 0.2 * s,
        'pelvis_tz': -0.4 + 0 * t,
        'pelvis_ty': 0.95 - 0.12 * bump,
    }


def _synthetic_trc(path: Path) -> dict:
    from vp3d_ros.kinematics import model as kmodel, require_opensim
    osim = require_opensim()
    model = kmodel.load()
    state = model.initSystem()
    ss = osim.ScaleSet()
    bodies = model.getBodySet()
    for i in range(bodies.getSize()):
        name = bodies.get(i).getName()
        f = PELVIS if name in ('pelvis', 'sacrum') else (SCALES.get(name, 1.0),) * 3
        sc = osim.Scale()
        sc.setSegmentName(name)
        sc.setScaleFactors(osim.Vec3(*f))
        sc.setApply(True)
        ss.cloneAndAppend(sc)
    model.scale(state, ss, True, 70.0)
    state = model.initSystem()
    n = int(round((STAND_S + MOVE_S) * RATE)) + 1
    t = np.arange(n) / RATE
    truth = _truth(t)
    coords = model.getCoordinateSet()
    names = km.H36M_MARKERS
    xyz = np.zeros((n, len(names), 3))
    for k in range(n):
        for c, v in truth.items():
            coords.get(c).setValue(state, float(v[k]), False)
        model.realizePosition(state)
        for j, m in enumerate(names):
            xyz[k, j] = model.getMarkerSet().get(m).getLocationInGround(state).to_numpy()
    km.write_trc(km.Markers(t, names, xyz), path)
    return {c: np.degrees(v) for c, v in truth.items()}


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.kinematics', *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def cli_run(tmp_path_factory):
    if not HAVE_OPENSIM:
        pytest.skip('opensim not importable')
    d = tmp_path_factory.mktemp('kin')
    trc = d / 'synthetic_squat.trc'
    truth = _synthetic_trc(trc)
    out = d / 'out'
    proc = subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.kinematics', str(trc),
                           '--out-dir', str(out), '--mass', '70'],
                          capture_output=True, text=True, timeout=300)
    return proc, out, truth


# --- pure helpers (no OpenSim) ---------------------------------------------------------

@needs_opensim
def test_opensim_reads_our_trc_with_the_last_marker_missing(tmp_path):
    from vp3d_ros.kinematics import require_opensim
    osim = require_opensim()
    xyz = np.random.default_rng(3).normal(size=(3, 17, 3))
    xyz[1, 16] = np.nan                                   # RWrist, the last column
    path = km.write_trc(km.Markers(np.arange(3) / 10, km.H36M_MARKERS, xyz), tmp_path / 'a.trc')
    table = osim.TimeSeriesTableVec3(str(path))
    assert table.getNumRows() == 3
    assert np.isnan(table.getRowAtIndex(1).getElt(0, 16).to_numpy()).all()
    assert np.allclose(table.getRowAtIndex(2).getElt(0, 16).to_numpy(), xyz[2, 16], atol=1e-6)


def test_trc_round_trip_keeps_missing_markers_and_reads_units(tmp_path):
    t = np.arange(5) / 50.0
    xyz = np.random.default_rng(0).normal(size=(5, 17, 3))
    xyz[2, 3] = np.nan
    path = km.write_trc(km.Markers(t, km.H36M_MARKERS, xyz), tmp_path / 'a.trc')
    back = km.read_trc(path)
    assert back.names == km.H36M_MARKERS
    assert np.allclose(back.times, t) and abs(back.rate - 50.0) < 1e-6
    assert np.isnan(back.xyz[2, 3]).all()
    ok = np.isfinite(xyz)
    assert np.allclose(back.xyz[ok], xyz[ok], atol=1e-6)
    mm = path.read_text().replace('\tm\t', '\tmm\t', 1)
    (tmp_path / 'b.trc').write_text(mm)
    assert np.allclose(km.read_trc(tmp_path / 'b.trc').xyz[ok], xyz[ok] * 1e-3, atol=1e-9)


def test_reads_the_world_trc_vp3d_export_writes(tmp_path):
    from vp3d_ros.io import records
    from vp3d_ros.core.skeletons import H36M17
    pos = np.random.default_rng(2).normal(size=(4, 17, 3))
    track = records.Track('/cam01/skeleton_3d/world', 0, H36M17.joints, 5 + np.arange(4) / 30,
                          pos, np.ones((4, 17)))
    m = km.read_trc(records.write_world_trc(track, tmp_path / 'w.trc'))
    assert m.names == km.H36M_MARKERS and np.allclose(m.times, np.arange(4) / 30, atol=1e-6)
    assert np.allclose(m.xyz, km.zup_to_yup(pos), atol=1e-6)   # same axes as records' export


def _stick_figure(arms_down: bool) -> np.ndarray:
    """(17, 3) joint centres, Y up, facing +X."""
    j = {'Hip': (0, 0.95, 0), 'RHip': (0, 0.95, 0.13), 'LHip': (0, 0.95, -0.13),
         'RKnee': (0, 0.5, 0.13), 'LKnee': (0, 0.5, -0.13), 'RFoot': (0, 0.08, 0.13),
         'LFoot': (0, 0.08, -0.13), 'Spine': (0, 1.18, 0), 'Thorax': (0, 1.42, 0),
         'Neck_Nose': (0.05, 1.52, 0), 'Head': (0, 1.62, 0),
         'RShoulder': (0, 1.38, 0.15), 'LShoulder': (0, 1.38, -0.15)}
    for s, z in (('R', 1), ('L', -1)):
        if arms_down:
            j[f'{s}Elbow'], j[f'{s}Wrist'] = (0, 1.1, z * 0.17), (0, 0.85, z * 0.18)
        else:   # T-pose
            j[f'{s}Elbow'], j[f'{s}Wrist'] = (0, 1.38, z * 0.43), (0, 1.38, z * 0.68)
    return np.array([j[n] for n in km.H36M_MARKERS], dtype=float)


def test_standing_window_prefers_arms_down_over_an_opening_t_pose():
    t = np.arange(200) / 50.0
    xyz = np.repeat(_stick_figure(False)[None], 200, axis=0)      # 0-2 s: still T-pose
    walk = np.zeros((50, 1, 3))
    walk[:, 0, 0] = np.linspace(-0.5, 0.0, 50)                      # 2-3 s: walking at 0.5 m/s
    xyz[100:150] = _stick_figure(True) + walk
    xyz[150:] = _stick_figure(True)                                 # 3-4 s: still, arms down
    rng = np.random.default_rng(4)
    xyz = xyz + rng.normal(scale=0.02, size=xyz.shape)              # 2 cm jitter throughout
    a, b = km.static_window(km.Markers(t, km.H36M_MARKERS, xyz), search_s=3.0)
    assert a >= 150 and b - a == 25
    assert km.neutral_frames(km.Markers(t, km.H36M_MARKERS, xyz))[150:].mean() > 0.9


def test_implausible_limb_markers_are_dropped():
    t = np.arange(20) / 20.0
    xyz = np.zeros((20, 17, 3))
    n = km.H36M_MARKERS
    xyz[:, n.index('RShoulder')] = [0, 1.4, 0.2]
    xyz[:, n.index('RElbow')] = [0, 1.12, 0.2]
    xyz[:, n.index('RWrist')] = [0, 0.87, 0.2]
    xyz[5, n.index('RWrist')] = [0, 1.04, 0.2]      # forearm 8 cm instead of 25
    out, dropped = km.drop_implausible(km.Markers(t, n, xyz))
    assert dropped == {'RWrist': 1}
    assert np.isnan(out.xyz[5, n.index('RWrist')]).all()
    assert np.isfinite(np.delete(out.xyz, 5, axis=0)).all()


def test_a_short_leg_has_its_knee_bent_back_to_the_legs_length():
    """The averaged fold: in some frames the knee sits halfway between its two depths, on a
    thigh and shin 20 % short. Bent back, the bones take their own length again, hip and
    ankle stay, the knee bends more and stays on its side; a leg of constant length is
    left alone."""
    n = km.H36M_MARKERS
    T = 50
    thigh, shin = 0.45, 0.42
    xyz = np.zeros((T, len(n), 3))
    xyz[:, n.index('LHip')] = [0, 0.9, -0.1]
    xyz[:, n.index('LKnee')] = [0, 0.45, -0.1]
    xyz[:, n.index('LFoot')] = [0, 0.03, -0.1]
    flex = np.radians(np.linspace(10, 110, T))              # right knee bending forward
    hip = np.array([0, 0.9, 0.1])
    knee = hip + thigh * np.stack([np.sin(flex / 2), -np.cos(flex / 2), 0 * flex], -1)
    ankle = knee + shin * np.stack([-np.sin(flex / 2), -np.cos(flex / 2), 0 * flex], -1)
    xyz[:, n.index('RHip')], xyz[:, n.index('RFoot')] = hip, ankle
    xyz[:, n.index('RKnee')] = knee
    folded = np.arange(T) >= 40                             # the deep frames: averaged
    mid = (hip + ankle[folded]) / 2
    xyz[folded, n.index('RKnee')] = mid + 0.6 * (knee[folded] - mid)
    m = km.Markers(np.arange(T) / 50.0, n, xyz)
    out, bent = km.bend_short_legs(m)
    assert bent == {'RKnee': int(folded.sum())}
    r = out.xyz[:, n.index('RKnee')]
    np.testing.assert_allclose(np.linalg.norm(r - hip, axis=-1), thigh, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(ankle - r, axis=-1), shin, atol=1e-6)
    np.testing.assert_allclose(r, knee, atol=1e-6)           # back on the true knee
    same = np.ones(len(n), bool)
    same[n.index('RKnee')] = False
    assert np.array_equal(out.xyz[:, same], xyz[:, same])
    _, none = km.bend_short_legs(km.Markers(m.times, n, np.where(folded[:, None, None],
                                                                    xyz[0], xyz)))
    assert none == {}


def test_heading_is_measured_and_turned_to_face_plus_x():
    n = km.H36M_MARKERS
    xyz = np.zeros((3, 17, 3))
    xyz[:, n.index('RHip')] = [0, 0.9, 0.13]         # facing +X: right hip towards +Z
    xyz[:, n.index('LHip')] = [0, 0.9, -0.13]
    m = km.rotate_about_vertical(km.Markers(np.arange(3.0), n, xyz), 50.0)
    assert abs(km.heading_deg(m) + 50.0) < 1e-6
    back = km.rotate_about_vertical(m, km.heading_deg(m))
    assert abs(km.heading_deg(back)) < 1e-6 and np.allclose(back.xyz, xyz)


def test_zup_to_yup_is_a_rotation_that_lifts_z():
    up = km.zup_to_yup(np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]))
    assert np.allclose(up[0], [0, 1, 0])       # up stays up
    assert np.allclose(up[1], [0, 0, -1])      # REP-103 left -> OpenSim -Z (Z is right)
    assert np.isclose(np.linalg.det(km.ZUP_TO_YUP), 1.0)


def test_axial_rotation_priors_fade_as_the_joint_below_bends():
    from vp3d_ros.kinematics import model as kmodel
    bends = np.array([0.0, 5.0, 20.0, 60.0, 120.0])
    x = np.zeros((len(bends), len(km.H36M_MARKERS), 3))
    n = km.H36M_MARKERS.index
    for k, b in enumerate(np.radians(bends)):   # right arm: upper arm down, forearm bent
        x[k, n('RShoulder')] = (0.0, 1.4, 0.2)
        x[k, n('RElbow')] = (0.0, 1.1, 0.2)
        x[k, n('RWrist')] = (0.25 * np.sin(b), 1.1 - 0.25 * np.cos(b), 0.2)
        x[k, n('LShoulder')] = (0.0, 1.4, -0.2)                # left arm straight
        x[k, n('LElbow')] = (0.0, 1.1, -0.2)
        x[k, n('LWrist')] = (0.0, 0.85, -0.2)
    x[2, n('LWrist')] = np.nan                                 # a missing wrist: prior in full
    m = km.Markers(np.arange(len(bends)) / 50.0, km.H36M_MARKERS, x)
    assert np.allclose(km.bend_deg(m, 'RShoulder', 'RElbow', 'RWrist'), bends, atol=1e-6)
    w = kmodel.prior_weights(m)
    full = kmodel.PRIORS['arm_rot_r']
    lo, hi = kmodel.BEND_DEG
    assert lo < 20 < hi
    keep = np.array([1.0, 1.0, (hi - 20) / (hi - lo), 0.0, 0.0])
    f = kmodel.BEND_FLOOR
    assert np.allclose(w['arm_rot_r'], full * (f + (1 - f) * keep))
    assert np.allclose(w['arm_rot_l'], full)
    assert np.allclose(w['L5_S1_Flex_Ext'], kmodel.PRIORS['L5_S1_Flex_Ext'])
    assert np.allclose(w['hip_rotation_r'], kmodel.PRIORS['hip_rotation_r'])


def test_lowpass_smooths_each_marker_run_and_keeps_gaps():
    from vp3d_ros.kinematics.pipeline import lowpass
    rate = 50.0
    t = np.arange(200) / rate
    rng = np.random.default_rng(3)
    slow = np.sin(2 * np.pi * 0.5 * t)
    x = np.repeat(slow[:, None, None], 17, axis=1).repeat(3, axis=2)
    noisy = x + rng.normal(0, 0.02, x.shape)
    noisy[90:100, 5] = np.nan                                  # a gap in one marker
    m = km.Markers(t, km.H36M_MARKERS, noisy)
    assert lowpass(m, None) is m and lowpass(m, 0) is m
    out = lowpass(m, 6.0).xyz
    assert np.isnan(out[90:100, 5]).all() and np.isfinite(out[:90]).all()
    ok = np.isfinite(noisy)
    err_in = np.sqrt(np.mean((noisy - x)[ok] ** 2))
    err_out = np.sqrt(np.mean((out - x)[ok] ** 2))
    assert err_out < 0.5 * err_in, (err_in, err_out)
    with pytest.raises(ValueError, match='half the marker rate'):
        lowpass(m, 30.0)


def test_static_window_finds_the_still_part():
    t = np.arange(150) / 50.0
    rng = np.random.default_rng(1)
    xyz = np.cumsum(rng.normal(scale=0.01, size=(150, 17, 3)), axis=0)   # moving
    xyz[60:100] = xyz[60]                                                # still 1.2-2.0 s
    a, b = km.static_window(km.Markers(t, km.H36M_MARKERS, xyz), search_s=3.0, window_s=0.5)
    assert 60 <= a and b <= 100 and b - a == 25


@needs_opensim
def test_importing_opensim_leaves_the_library_path_of_child_processes_alone():
    code = ('import os; keys = ("PATH", "LD_LIBRARY_PATH")\n'
            'before = [os.environ.get(k) for k in keys]\n'
            'from vp3d_ros.kinematics import require_opensim; require_opensim()\n'
            'import opensim; assert opensim.Model is not None\n'
            'print([os.environ.get(k) for k in keys] == before)')
    env = dict(os.environ, LD_LIBRARY_PATH='/some/ros/libs')
    res = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.stdout.strip().endswith('True'), res.stdout + res.stderr


def test_cli_says_how_to_install_opensim_when_missing(tmp_path):
    code = ('import sys; sys.modules["opensim"] = None\n'
            'from vp3d_ros.cli.kinematics import main\n'
            f'sys.exit(main([{str(tmp_path / "x.trc")!r}, "--out-dir", {str(tmp_path)!r}]))')
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3
    assert 'pip install --no-deps opensim==4.6' in proc.stderr


def _write_bag(path: Path, trc: Path, stride: int = 2, other: int = None):
    """A LandmarkRecord bag: the TRC's markers as /skeleton_3d/fused (REP-103, z up) and a
    camera-frame /cam01/skeleton_3d (root-relative, must not be used); ``other``: a second
    person of that id, 1.5 m aside, in the first half of the frames only."""
    from vp3d_ros.io import bag_io, records
    from vp3d_ros.io.bag_io import BagWriter
    m = km.read_trc(trc)
    zup = m.xyz[::stride] @ km.ZUP_TO_YUP          # inverse rotation: Y up -> z up
    with BagWriter(path, metadata={bag_io.META_FORMAT: 'LandmarkRecord/1'}) as w:
        for topic in ('/skeleton_3d/fused', '/cam01/skeleton_3d'):
            w.add_topic(topic, records.CLOUD_TYPE)
        for k, t in enumerate(m.times[::stride]):
            ns = 10**9 + int(round(t * 1e9))
            pts, ids = zup[k][None], [0]
            if other is not None and k < len(zup) // 2:
                pts, ids = np.stack([zup[k], zup[k] + [1.5, 0.0, 0.0]]), [0, other]
            w.write_msg('/skeleton_3d/fused', ns,
                        records.make_cloud(pts, np.ones((len(ids), 17)), ids, ns, 'world'))
            w.write_msg('/cam01/skeleton_3d', ns,
                        records.make_cloud(zup[k] - zup[k, :1], np.ones(17), [0], ns, 'cam01'))
    return m.times[::stride]


# --- real OpenSim ------------------------------------------------------------------------

@needs_opensim
def test_cli_contract_outputs(cli_run):
    proc, out, _ = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = 'synthetic_squat'
    for suffix in ('.mot', '_scaled.osim', '_angles.csv', '_angles.png', '_summary.json',
                   '_summary.txt'):
        assert (out / f'{name}{suffix}').stat().st_size > 0, suffix
    from vp3d_ros.kinematics.report import read_mot
    mot = read_mot(out / f'{name}.mot')
    for side in ('r', 'l'):
        for c in ('hip_flexion', 'hip_adduction', 'hip_rotation', 'knee_angle', 'ankle_angle'):
            assert f'{c}_{side}' in mot
    assert 'inDegrees=yes' in (out / f'{name}.mot').read_text()
    assert len(mot['time']) == int(round((STAND_S + MOVE_S) * RATE)) + 1
    assert (out / f'{name}_angles.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    summary = json.loads((out / f'{name}_summary.json').read_text())
    assert set(summary['markers']) == set(km.H36M_MARKERS)
    assert {'ankle_angle_r', 'ankle_angle_l', 'subtalar_angle_r', 'wrist_flex_r'} <= set(
        summary['not_measured'])
    assert 'pelvis_tilt' in summary['inferred']
    # a synthetic squat has legs of constant length: no knee to bend back
    assert summary['short_legs_bent'] is True and summary['knees_bent_frames'] == {}


@needs_opensim
def test_ik_recovers_known_angles_and_scale(cli_run):
    proc, out, truth = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    from vp3d_ros.kinematics.report import read_mot
    mot = read_mot(out / 'synthetic_squat.mot')
    for c in ('hip_flexion_r', 'hip_flexion_l', 'knee_angle_r', 'knee_angle_l',
              'arm_flex_r', 'elbow_flex_r', 'elbow_flex_l', 'arm_rot_r'):
        rmse = float(np.sqrt(np.mean((mot[c] - truth[c]) ** 2)))
        # arm_rot: held near 0 while the elbow is nearly straight (17 deg with a constant prior)
        assert rmse < (5.0 if c == 'arm_rot_r' else 3.0), (c, rmse)
    # the subject is turned to face +X (pelvis angles are ground-frame Euler angles)
    summary = json.loads((out / 'synthetic_squat_summary.json').read_text())
    assert abs(summary['turned_about_vertical_deg'] + math.degrees(HEADING)) < 1.0
    assert np.abs(mot['pelvis_rotation']).max() < 3.0
    assert np.abs(mot['hip_rotation_r']).max() < 5 and np.abs(mot['arm_rot_l']).max() < 5
    assert np.allclose(mot['ankle_angle_r'], 0) and np.allclose(mot['subtalar_angle_l'], 0)
    rom = summary['range_of_motion_deg']
    for c in ('knee_angle_r', 'knee_angle_l', 'hip_flexion_r'):     # the known motion's range
        assert abs(rom[c]['max_deg'] - truth[c].max()) < 3.0, (c, rom[c])
        assert abs(rom[c]['range_deg'] - np.ptp(truth[c])) < 4.0, (c, rom[c])
    assert 'range of motion' in (out / 'synthetic_squat_summary.txt').read_text()
    f = summary['scale_factors']
    assert abs(f['thigh'] - 1.08) < 0.01 and abs(f['shank'] - 1.05) < 0.01
    assert abs(f['pelvis_width'] - 1.5) < 0.01 and abs(f['upper_arm'] - 0.95) < 0.01
    # markers generated by the model itself: the scaled model must fit them closely
    assert summary['leg_marker_rms_m'] < 0.005, summary['leg_marker_rms_m']
    assert summary['marker_rms_m'] < 0.01, summary['marker_rms_m']


@needs_opensim
def test_z_up_trc_is_refused_or_turned_and_frames_without_the_subject_stay_nan(cli_run,
                                                                                tmp_path):
    """A Z-up TRC (Vicon, Qualisys) would fit a model lying on its back without an error:
    refused unless --up z. Frames where the subject is not seen (the start of a recording,
    a lost track) used to stop OpenSim's assembler for the whole run; they are left NaN."""
    proc, out, truth = cli_run
    m = km.read_trc(next(p for p in out.parent.iterdir() if p.suffix == '.trc'))
    xyz = m.xyz @ km.ZUP_TO_YUP          # Y up -> Z up: the inverse rotation
    xyz[:5] = np.nan                     # not yet in view
    xyz[40:44] = np.nan                  # lost for four frames
    xyz[60:63, :3] = np.nan              # the pelvis unseen
    xyz[:, km.H36M_MARKERS.index('Head')] = np.nan   # a marker never seen
    gaps = tmp_path / 'zup_gaps.trc'
    km.write_trc(m._replace(xyz=xyz), gaps)
    refused = _cli(gaps, '--out-dir', tmp_path / 'refused')
    assert refused.returncode == 2 and '--up z' in refused.stderr, refused.stderr[-2000:]
    assert not (tmp_path / 'refused' / 'zup_gaps.mot').exists()
    turned = _cli(gaps, '--up', 'z', '--out-dir', tmp_path / 'turned')
    assert turned.returncode == 0, turned.stderr[-3000:]
    from vp3d_ros.kinematics.report import read_mot
    mot = read_mot(tmp_path / 'turned' / 'zup_gaps.mot')
    unseen = np.zeros(len(m.times), bool)
    unseen[:5] = unseen[40:44] = unseen[60:63] = True
    assert len(mot['time']) == len(m.times)
    for c in ('hip_flexion_r', 'knee_angle_r', 'knee_angle_l', 'pelvis_tilt'):
        assert np.isnan(mot[c][unseen]).all() and np.isfinite(mot[c][~unseen]).all(), c
    for c in ('hip_flexion_r', 'hip_flexion_l', 'knee_angle_r', 'knee_angle_l'):
        rmse = float(np.sqrt(np.mean((mot[c] - truth[c])[~unseen] ** 2)))
        assert rmse < 3.0, (c, rmse)
    csv = np.genfromtxt(tmp_path / 'turned' / 'zup_gaps_angles.csv', delimiter=',',
                        names=True)                   # frames not solved: empty cells
    np.testing.assert_allclose(csv['knee_angle_r_deg'], mot['knee_angle_r'], atol=1e-4)
    summary = json.loads((tmp_path / 'turned' / 'zup_gaps_summary.json').read_text())
    assert summary['frames_not_solved'] == int(unseen.sum())
    assert summary['markers']['Head']['rms_m'] is None        # strict JSON: null, not NaN
    assert 'Z up, turned to Y up' in summary['source']


def test_standing_axis_is_measured_from_head_over_feet():
    n = km.H36M_MARKERS
    xyz = np.zeros((10, len(n), 3))
    xyz[:, n.index('Head'), 1] = 1.6
    xyz[:, n.index('RFoot'), 2], xyz[:, n.index('LFoot'), 2] = 0.1, -0.1
    yup = km.Markers(np.arange(10) / 30.0, n, xyz)
    assert km.standing_axes(yup)['+Y'] == 1.0
    km.check_y_up(yup, 'y up')
    zup = yup._replace(xyz=xyz[..., [0, 2, 1]])
    assert km.standing_axes(zup)['+Z'] == 1.0
    with pytest.raises(ValueError, match='stands along [+]Z.*[(]turn it[)]'):
        km.check_y_up(zup, 'z up', {'+Z': 'turn it'})
    lying = yup._replace(xyz=xyz[..., [1, 0, 2]])            # along +X: no hint to give
    with pytest.raises(ValueError, match='stands along [+]X'):
        km.check_y_up(lying, 'x')
    mixed = yup._replace(xyz=np.concatenate([xyz[:2], xyz[2:, :, [0, 2, 1]]]))
    km.check_y_up(mixed, 'stands up at times')                # some frames along +Y: kept


@needs_opensim
def test_shoulder_elevation_follows_the_humerus_without_gimbal_jumps(cli_run):
    """The CSV's humerothoracic angles: pure flexion (with axial rotation) of the synthetic
    arms is elevation = arm_flex in the sagittal plane (plane of elevation 90 deg)."""
    proc, out, truth = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    csv = np.genfromtxt(out / 'synthetic_squat_angles.csv', delimiter=',', names=True)
    for side in 'rl':
        elev = csv[f'shoulder_elevation_{side}_deg']
        err = elev - truth[f'arm_flex_{side}']
        assert np.sqrt(np.mean(err ** 2)) < 3.0, (side, err)
        up = truth[f'arm_flex_{side}'] > 20
        assert np.abs(csv[f'shoulder_plane_{side}_deg'][up] - 90).max() < 8, side
    summary = json.loads((out / 'synthetic_squat_summary.json').read_text())
    assert 'gimbal' in summary['derived']['shoulder_elevation_r']


@needs_opensim
def test_bag_with_a_fused_track_gives_the_same_angles(cli_run, tmp_path):
    proc, out, _ = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    times = _write_bag(tmp_path / 'session', out.parent / 'synthetic_squat.trc')
    res = subprocess.run([sys.executable, '-m', 'vp3d_ros.cli.kinematics',
                          str(tmp_path / 'session'), '--out-dir', str(tmp_path / 'o')],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    from vp3d_ros.kinematics.report import read_mot
    bag = read_mot(tmp_path / 'o' / 'session.mot')
    trc = read_mot(out / 'synthetic_squat.mot')
    assert np.allclose(bag['time'], times - times[0], atol=1e-4)
    summary = json.loads((tmp_path / 'o' / 'session_summary.json').read_text())
    assert '/skeleton_3d/fused' in summary['source']
    assert (tmp_path / 'o' / 'session.trc').exists()
    for c in ('hip_flexion_r', 'knee_angle_l', 'elbow_flex_r', 'pelvis_rotation'):
        assert np.abs(bag[c] - trc[c][::2]).max() < 2.0, c


@needs_opensim
def test_a_model_that_cannot_load_is_refused_with_exit_2(cli_run, tmp_path):
    proc, out, _ = cli_run
    trc = out.parent / 'synthetic_squat.trc'
    (tmp_path / 'broken.osim').write_text('<OpenSimDocument>\n')
    for model, said in ((tmp_path / 'broken.osim', 'cannot load OpenSim model'),
                        (tmp_path / 'none.osim', 'does not exist')):
        res = _cli(trc, '--model', model, '--out-dir', tmp_path / 'o')
        assert res.returncode == 2 and said in res.stderr, res.stderr[-2000:]
        assert 'Traceback' not in res.stderr
    # inputs that are not ours: a folder that is no bag, a text file; an unwritable out-dir
    (tmp_path / 'folder').mkdir()
    (tmp_path / 'notes.txt').write_text('hello\n')
    for args, said in (((tmp_path / 'folder',), 'not a rosbag2 bag'),
                       ((tmp_path / 'notes.txt',), 'not a TRC (.trc)'),
                       ((trc, '--out-dir', '/proc/vp3d_no_such_dir'), 'No such file')):
        res = _cli(*args, *(() if '--out-dir' in args else ('--out-dir', tmp_path / 'o')))
        assert res.returncode == 2 and said in res.stderr, (args, res.stderr[-2000:])
        assert 'Traceback' not in res.stderr


@needs_opensim
def test_person_picks_one_of_several_in_a_bag(cli_run, tmp_path):
    """Two people in the fused track: the one seen in most frames by default, --person ID
    the other (seen half the time: its frames without it stay NaN), an absent id refused."""
    proc, out, _ = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    times = _write_bag(tmp_path / 'two', out.parent / 'synthetic_squat.trc', other=5)
    res = _cli(tmp_path / 'two', '--person', '5', '--out-dir', tmp_path / 'o5')
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads((tmp_path / 'o5' / 'two_summary.json').read_text())
    assert summary['source'].endswith('person 5')
    assert summary['frames_not_solved'] == len(times) - len(times) // 2
    from vp3d_ros.kinematics.report import read_mot
    five = read_mot(tmp_path / 'o5' / 'two.mot')['knee_angle_r']
    assert np.isfinite(five[:len(times) // 2]).all() and np.isnan(five[len(times) // 2:]).all()
    res = _cli(tmp_path / 'two', '--out-dir', tmp_path / 'o0')
    assert res.returncode == 0 and json.loads((tmp_path / 'o0' / 'two_summary.json').read_text())[
        'source'].endswith('person 0')
    res = _cli(tmp_path / 'two', '--person', '9', '--out-dir', tmp_path / 'o9')
    assert res.returncode == 2 and 'persons: [0, 5]' in res.stderr, res.stderr


@needs_opensim
def test_bag_without_a_world_track_is_refused(tmp_path):
    from vp3d_ros.io import bag_io, records
    from vp3d_ros.io.bag_io import BagWriter
    with BagWriter(tmp_path / 'cam_only', metadata={bag_io.META_FORMAT: 'LandmarkRecord/1'}) as w:
        w.add_topic('/cam01/skeleton_3d', records.CLOUD_TYPE)
        for k in range(5):
            w.write_msg('/cam01/skeleton_3d', 10**9 + k * 10**7,
                        records.make_cloud(np.zeros((17, 3)), np.ones(17), [0], 10**9 + k * 10**7))
    res = _cli(tmp_path / 'cam_only', '--out-dir', tmp_path / 'o')
    assert res.returncode == 2
    assert 'no world-frame H36M-17 track' in res.stderr


@needs_opensim
def test_npy_world_joints_need_fps_and_shape(tmp_path):
    np.save(tmp_path / 'w.npy', np.zeros((10, 17, 3)))
    res = _cli(tmp_path / 'w.npy', '--out-dir', tmp_path / 'o')
    assert res.returncode == 2 and '--fps' in res.stderr
    np.save(tmp_path / 'bad.npy', np.zeros((10, 16, 3)))
    res = _cli(tmp_path / 'bad.npy', '--fps', '50', '--out-dir', tmp_path / 'o')
    assert res.returncode == 2 and '(T, 17, 3)' in res.stderr
    yup = np.zeros((10, 17, 3))                    # a Y-up array where REP-103 z up is due
    yup[:, km.H36M_MARKERS.index('Head'), 1] = 1.6
    np.save(tmp_path / 'yup.npy', yup)
    res = _cli(tmp_path / 'yup.npy', '--fps', '50', '--out-dir', tmp_path / 'o')
    assert res.returncode == 2 and 'this input looks Y up' in res.stderr, res.stderr


@needs_opensim
def test_live_ik_of_world_skeletons_matches_the_offline_angles(cli_run):
    """kinematics.live.WorldSkeletonIK (the kinematics node's engine), frame by frame on z-up
    world skeletons, turned about the vertical: the angles of the offline IK of the same
    frames; a frame without the pelvis is not solved."""
    from vp3d_ros.kinematics.live import WorldSkeletonIK
    from vp3d_ros.kinematics.report import read_mot
    proc, out, _ = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = km.read_trc(out.parent / 'synthetic_squat.trc')
    zup = m.xyz @ km.ZUP_TO_YUP
    c, s_ = np.cos(np.radians(60)), np.sin(np.radians(60))
    zup = zup @ np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1]]).T   # facing 60 deg off +X
    live = WorldSkeletonIK(out / 'synthetic_squat_scaled.osim')
    mot = read_mot(out / 'synthetic_squat.mot')
    for k in range(0, len(m.times), 6):
        if k == 12:
            hidden = zup[k].copy()
            hidden[:3] = np.nan
            assert live.step(hidden, m.times[k]) is None
        q = dict(zip(live.coordinates, live.step(zup[k], m.times[k])))
        for name in ('hip_flexion_r', 'knee_angle_r', 'knee_angle_l', 'elbow_flex_r'):
            assert abs(np.degrees(q[name]) - mot[name][k]) < 2.0, (name, k)
    assert live.turn is not None and abs(abs(live.turn) - 60) < 5, live.turn


@needs_opensim
def test_kinematics_node_publishes_joint_states_over_dds(cli_run, tmp_path):
    """kinematics_node as its own process: fused skeletons in (z up), JointState out, the
    angles those of the offline IK of the same frames."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState, PointCloud2
    from std_msgs.msg import Header
    from builtin_interfaces.msg import Time
    from ros_harness import Client, NodeProcess, ros_env, unique_domain_id
    from vp3d_ros.kinematics.report import read_mot
    from vp3d_ros.nodes.ros_conversions import keypoints_to_cloud
    proc, out, _ = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = km.read_trc(out.parent / 'synthetic_squat.trc')
    frames = list(range(0, len(m.times), 3))
    zup = m.xyz @ km.ZUP_TO_YUP
    domain = unique_domain_id()
    env = ros_env(domain, tmp_path / 'ros_log')
    client = Client(domain)
    node = NodeProcess('kinematics_node', ['-p', f'model:={out / "synthetic_squat_scaled.osim"}',
                                           '-p', 'latest_only:=false'],
                       env, tmp_path / 'kinematics.log')
    try:
        assert node.wait_for_log('IK of', 120), node.log()
        client.collect(JointState, '/kinematics/joint_states')
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
        pub = client.node.create_publisher(PointCloud2, '/skeleton_3d/fused', qos)
        assert client.wait_for_subscribers(pub, 1, 60)
        assert client.wait_for(
            lambda: client.node.count_publishers('/kinematics/joint_states') >= 1, 60)
        unseen = frames[5]          # the pelvis not seen in this frame: nothing published
        for k in frames:
            ns = 10**9 + int(round(m.times[k] * 1e9))
            header = Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id='world')
            xyz = zup[k].copy()
            if k == unseen:
                xyz[:3] = np.nan
            pub.publish(keypoints_to_cloud(header, xyz[None], np.ones((1, 17)), [0]))
        got = lambda: len(client.messages('/kinematics/joint_states'))  # noqa: E731
        assert client.wait_for(lambda: got() >= len(frames) - 1, 180), (got(), node.log())
        assert node.wait_for_log('not solved', 30), node.log()
    finally:
        client.close()
        node.stop()
    msgs = client.messages('/kinematics/joint_states')
    assert len(msgs) == len(frames) - 1
    mot = read_mot(out / 'synthetic_squat.mot')
    for k, msg in zip([k for k in frames if k != unseen], msgs):
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert stamp == 10**9 + int(round(m.times[k] * 1e9))
        q = dict(zip(msg.name, msg.position))
        for c in ('hip_flexion_r', 'knee_angle_r', 'knee_angle_l', 'elbow_flex_r'):
            assert abs(np.degrees(q[c]) - mot[c][k]) < 2.0, (c, k, np.degrees(q[c]), mot[c][k])
        assert q['ankle_angle_r'] == 0.0


@needs_opensim
def test_kinematics_node_solves_the_newest_skeleton_when_behind(cli_run, tmp_path):
    """latest_only (default): skeletons sent faster than IK solves are not queued; the node
    drops the ones it has not reached and always gets to the newest, in order."""
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import JointState, PointCloud2
    from std_msgs.msg import Header
    from builtin_interfaces.msg import Time
    from ros_harness import Client, NodeProcess, ros_env, unique_domain_id
    from vp3d_ros.kinematics.report import read_mot
    from vp3d_ros.nodes.ros_conversions import keypoints_to_cloud
    proc, out, _ = cli_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = km.read_trc(out.parent / 'synthetic_squat.trc')
    zup = m.xyz @ km.ZUP_TO_YUP
    domain = unique_domain_id()
    client = Client(domain)
    node = NodeProcess('kinematics_node', ['-p', f'model:={out / "synthetic_squat_scaled.osim"}'],
                       ros_env(domain, tmp_path / 'ros_log'), tmp_path / 'kinematics.log')
    stamp_of = lambda k: 10**9 + int(round(m.times[k] * 1e9))  # noqa: E731
    try:
        assert node.wait_for_log('IK of', 120), node.log()
        client.collect(JointState, '/kinematics/joint_states')
        pub = client.node.create_publisher(PointCloud2, '/skeleton_3d/fused', QoSProfile(
            depth=200, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        assert client.wait_for_subscribers(pub, 1, 60)
        for k in range(len(m.times)):           # a burst: far faster than IK
            ns = stamp_of(k)
            header = Header(stamp=Time(sec=ns // 10**9, nanosec=ns % 10**9), frame_id='world')
            pub.publish(keypoints_to_cloud(header, zup[k][None], np.ones((1, 17)), [0]))
        last = stamp_of(len(m.times) - 1)
        stamps = lambda: [s.header.stamp.sec * 10**9 + s.header.stamp.nanosec  # noqa: E731
                          for s in client.messages('/kinematics/joint_states')]
        assert client.wait_for(lambda: last in stamps(), 120), (stamps(), node.log())
    finally:
        client.close()
        node.stop()
    got = stamps()
    assert got == sorted(set(got)) and len(got) <= len(m.times)
    q = dict(zip(client.messages('/kinematics/joint_states')[-1].name,
                 client.messages('/kinematics/joint_states')[-1].position))
    mot = read_mot(out / 'synthetic_squat.mot')
    for c in ('hip_flexion_r', 'knee_angle_r'):
        assert abs(np.degrees(q[c]) - mot[c][-1]) < 2.0, (c, np.degrees(q[c]), mot[c][-1])
