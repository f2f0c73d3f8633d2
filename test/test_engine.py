"""The lifting engine without ROS: stamp rules, persons limit, shared passes, owed poses, idle
flush and failures, with real (small, random) models; results equal offline lifting."""
import numpy as np
import pytest

from conftest import randomize_model
from vp3d_ros.core import cloud_schema
from vp3d_ros.core.engine import LiftingEngine
from vp3d_ros.core.lifter import SegmentLifter, SequenceLifter, StreamingLifter
from vp3d_ros.core.model import Architecture, build_model
from vp3d_ros.core.track_rules import TrackRules

MS = 1_000_000
SEC = 1_000_000_000
SIZE = (640, 480)
T0 = 1_700_000_000 * SEC  # a plausible wall-clock stamp


def _model(causal, seed=2):
    return randomize_model(build_model(Architecture((3, 3, 3), 16, causal)), seed=seed)


def _live(model, **kw):
    return lambda w, h: StreamingLifter(model, 'h36m', width=w, height=h, deferred=True, **kw)


def _frames(T, seed=0):
    """A person's 2D track: a random pose moving a few pixels a frame (continuous, as real
    tracks are: a limb jumping onto its twin's place is a label swap, traded back)."""
    rng = np.random.default_rng(seed)
    pose = rng.uniform(150, 450, size=(17, 2))
    return pose + np.cumsum(rng.normal(0, 3, size=(T, 17, 2)), axis=0), np.full((T, 17), 0.9)


def _collect(ready, into):
    for r in ready:
        for pid, poses in r.poses.items():
            for lp in poses:
                into.setdefault((r.camera, r.output, pid), []).append(lp)


@pytest.mark.parametrize('causal', [True, False])
def test_two_cameras_share_passes_and_equal_offline(causal):
    """Two cameras, two persons each, one main and one second output: every frame of one
    instant is lifted in one shared pass per model, each stream gets exactly the offline
    poses with its own stamps, in order."""
    model, other = _model(causal), _model(True, seed=5)
    eng = LiftingEngine([_live(model), _live(other)], ['cam01', 'cam02'])
    kp = {(c, p): _frames(40, seed=10 * i + p)[0] for i, c in enumerate(['cam01', 'cam02'])
          for p in (1, 2)}
    conf = np.full(17, 0.9)
    got = {}
    for t in range(40):
        for c in ('cam01', 'cam02'):
            stamp = T0 + t * 33 * MS
            eng.received(c, stamp, t * 33 * MS)
            assert eng.admit(c, stamp, T0)
            assert eng.add(c, stamp, {p: (kp[c, p][t], conf) for p in (1, 2)}, SIZE) == 2
        _collect(eng.lift_due(), got)
    _collect(eng.finish(), got)
    assert eng.streams_per_pass == 8.0      # 2 cameras x 2 persons x 2 models per pass
    for (c, p), k in kp.items():
        for out, m in ((0, model), (1, other)):
            poses = got[c, out, p]
            assert [lp.stamp_ns for lp in poses] == [T0 + t * 33 * MS for t in range(40)]
            want = SequenceLifter(m, 'h36m').lift(k, *SIZE)
            assert np.abs(np.stack([lp.pose for lp in poses]) - want).max() < 1e-5
    assert eng.take_notices() == [] and eng.resets == 0


def test_stamp_rules():
    """Zero and negative stamps and duplicates are refused and counted as dropped; time going
    back and long gaps are said (the windows restart); a stamp days ahead is kept, with a
    warning."""
    eng = LiftingEngine([_live(_model(True))], ['cam01'])
    kp, conf = _frames(1)
    assert not eng.admit('cam01', 0, T0) and not eng.admit('cam01', -5, T0)
    assert eng.admit('cam01', T0, T0)
    eng.add('cam01', T0, {0: (kp[0], conf[0])}, SIZE)
    assert not eng.admit('cam01', T0, T0)                       # duplicate
    assert eng.admit('cam01', T0 - SEC, T0)                    # back: kept, restarts
    assert eng.admit('cam01', T0 + 10 * SEC, T0)               # gap: kept, restarts
    assert eng.admit('cam01', T0 + 3 * 86_400 * SEC, T0)       # days ahead: kept, warned
    assert eng.admit('cam01', 33 * MS, T0, sim_time=False)     # video time (sec 0) is time
    notes = eng.take_notices()
    assert [n.count for n in notes[:3]] == ['dropped'] * 3
    kinds = [n.key.split('-')[0] for n in notes]
    assert kinds == ['stamp', 'stamp', 'dup', 'back', 'gap', 'future', 'gap', 'back']
    assert 'days ahead' in notes[5].text and notes[5].level == 'warning'
    assert eng.take_notices() == []


def test_frames_missing_from_the_stamp_sequence_are_counted():
    eng = LiftingEngine([_live(_model(True))], ['cam01'])
    for t in list(range(20)) + list(range(25, 30)):   # frames 20..24 lost
        eng.received('cam01', T0 + t * 33 * MS, t * 33 * MS)
    assert eng.frames_missing == 5
    (note,) = eng.take_notices()
    assert note.key == 'missing-cam01' and '5 keypoints_2d frame(s) missing' in note.text


def test_persons_limit_keeps_the_most_confident():
    """The limit is applied where the frame is read (the cloud, max_persons); the engine
    lifts what was kept and says how many the frame had."""
    eng = LiftingEngine([_live(_model(True))], ['cam01'])
    kp, _ = _frames(1)
    body = cloud_schema.build(np.stack([kp[0] + p for p in (1, 2, 3)]),
                              np.stack([np.full(17, c) for c in (0.3, 0.9, 0.8)]), [1, 2, 3])
    names, offsets = zip(*body.fields)
    people = cloud_schema.unpack(body.data, names, offsets, body.point_step, body.width,
                                 17, max_persons=2)
    assert eng.add('cam01', T0, people, SIZE, total=people.total) == 2
    (ready,) = eng.lift_due()
    assert sorted(ready.poses) == [2, 3]
    (note,) = eng.take_notices()
    assert note.key == 'persons-cam01' and '3 persons' in note.text
    with pytest.raises(ValueError):
        LiftingEngine([_live(_model(True))], ['a', 'a'])


def test_idle_camera_gives_back_what_it_owes_and_forgets_its_tracks():
    """A symmetric model owes (RF-1)/2 poses; a camera quiet for idle_flush_s gets them back
    (edge-padded, as offline), its windows end and its tracks are forgotten; a busy camera is
    left alone."""
    model = _model(False)
    eng = LiftingEngine([_live(model)], ['cam01', 'cam02'], idle_flush_s=1.0)
    kp, conf = _frames(20)
    got = {}
    for t in range(20):
        for c in ('cam01', 'cam02'):
            eng.received(c, T0 + t * 33 * MS, t * 33 * MS)
            eng.add(c, T0 + t * 33 * MS, {7: (kp[t], conf[t])}, SIZE)
        _collect(eng.lift_due(), got)
    assert len(got['cam01', 0, 7]) == 20 - 13          # RF 27: 13 frames owed
    eng.received('cam02', T0 + 20 * 33 * MS, 1500 * MS)    # cam02 still talks
    _collect(eng.flush_idle(1700 * MS), got)          # cam01 quiet for 1.07 s
    assert len(got['cam01', 0, 7]) == 20
    want = SequenceLifter(model, 'h36m').lift(kp, *SIZE)
    assert np.abs(np.stack([lp.pose for lp in got['cam01', 0, 7]]) - want).max() < 1e-5
    assert eng.cameras['cam01'].tracks[0] == {} and 7 in eng.cameras['cam02'].tracks[0]
    assert eng.resets == 1 and eng.take_notices()[0].key == 'idle-cam01'


def test_a_person_gone_is_bridged_then_ended_and_forgotten():
    """Missing for up to max_gap_frames: bridged (interpolated poses, flagged); longer: the
    segment ends with its poses and the track is forgotten, so a returning person starts
    afresh."""
    eng = LiftingEngine([_live(_model(True))], ['c'], TrackRules(max_gap_frames=3))
    kp, conf = _frames(30)
    got = {}
    seen = [t for t in range(30) if not 5 <= t < 7 and not 12 <= t < 20]
    for t in range(30):
        people = {4: (kp[t], conf[t])} if t in seen else {}
        eng.add('c', T0 + t * 33 * MS, people, SIZE)
        _collect(eng.lift_due(), got)
        if t == 17:
            assert eng.cameras['c'].tracks[0] == {}       # ended and forgotten
    _collect(eng.finish(), got)
    poses = got['c', 0, 4]
    stamps = [lp.stamp_ns for lp in poses]
    assert stamps == [T0 + t * 33 * MS for t in range(30) if t < 12 or t >= 20]
    assert [lp.bridged for lp in poses].count(True) == 2
    assert eng.resets == 1


def test_joints_far_outside_the_image_are_counted_and_held():
    eng = LiftingEngine([_live(_model(True))], ['c'])
    kp, conf = _frames(3)
    kp[1, 4] = [1e9, 1e9]
    for t in range(3):
        eng.add('c', T0 + t * 33 * MS, {0: (kp[t], conf[t])}, SIZE)
        eng.lift_due()
    assert eng.out_of_image == 1
    assert [n.key for n in eng.take_notices()] == ['far-c']


def test_a_failing_pass_drops_its_windows_and_the_next_frames_start_afresh():
    """A lifter whose pass raises (here: a model that was given a wrong device) loses its
    windows, is said once as an error, and the engine goes on serving."""
    model = _model(True)
    broken = {'on': True}

    def make(w, h):
        lf = StreamingLifter(model, 'h36m', width=w, height=h, deferred=True)
        if broken['on']:
            lf._state.kernels = None    # its pass cannot run
        return lf
    eng = LiftingEngine([make], ['c'])
    kp, conf = _frames(5)
    eng.add('c', T0, {0: (kp[0], conf[0])}, SIZE)
    assert eng.lift_due() == []
    (note,) = eng.take_notices()
    assert note.level == 'error' and note.count == 'error' and eng.resets == 1
    broken['on'] = False
    got = {}
    for t in range(1, 5):
        eng.add('c', T0 + t * 33 * MS, {0: (kp[t], conf[t])}, SIZE)
        _collect(eng.lift_due(), got)
    assert len(got['c', 0, 0]) == 4


def test_offline_segment_lifters_through_the_same_engine():
    """SegmentLifter tracks: nothing is due, every segment comes back whole at its end, with
    the poses of lifting the segment in one pass."""
    model = _model(False)
    eng = LiftingEngine([lambda w, h: SegmentLifter(SequenceLifter(model, 'h36m'), w, h)],
                        [''])
    kp, conf = _frames(25)
    got = {}
    for t in range(25):
        eng.add('', T0 + t * 33 * MS, {1: (kp[t], conf[t])}, SIZE)
        assert eng.lift_due() == []
    _collect(eng.finish(), got)
    want = SequenceLifter(model, 'h36m').lift(kp, *SIZE)
    assert np.abs(np.stack([lp.pose for lp in got['', 0, 1]]) - want).max() < 1e-6
