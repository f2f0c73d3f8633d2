"""Track windows: stamps, gap bridging, resets; results equal offline lifting."""
import numpy as np
import pytest

from conftest import randomize_model
from vp3d_ros.core.lifter import SequenceLifter, StreamingLifter
from vp3d_ros.core.model import Architecture, build_model
from vp3d_ros.core.windowing import TrackWindow

MS = 1_000_000


def make_window(causal, **kw):
    model = randomize_model(build_model(Architecture((3, 3, 3), 16, causal)), seed=2)
    maker = lambda w, h: StreamingLifter(model, 'h36m', width=w, height=h)  # noqa: E731
    return model, TrackWindow(maker, **kw)


def frames(T, seed=0):
    """A person's 2D track: a random pose moving a few pixels a frame (continuous, as real
    tracks are: a limb jumping onto its twin's place is a label swap, traded back)."""
    rng = np.random.default_rng(seed)
    pose = rng.uniform(150, 450, size=(17, 2))
    return pose + np.cumsum(rng.normal(0, 3, size=(T, 17, 2)), axis=0), np.full((T, 17), 0.9)


@pytest.mark.parametrize('causal', [True, False])
def test_stamps_and_values_match_offline(causal):
    model, win = make_window(causal)
    kp, conf = frames(60)
    out = []
    for t in range(60):
        got = win.add(t * 33 * MS, kp[t], conf[t], (640, 480))
        if causal:
            assert [p.stamp_ns for p in got] == [t * 33 * MS]
        out += got
    out += win.finish()
    assert [p.stamp_ns for p in out] == [t * 33 * MS for t in range(60)]
    ref = SequenceLifter(model, 'h36m').lift(kp, 640, 480)
    assert np.abs(np.stack([p.pose for p in out]) - ref).max() < 1e-5


def test_short_gap_is_bridged_by_interpolation():
    model, win = make_window(True, max_gap_frames=5)
    kp, conf = frames(20)
    out = []
    for t in range(20):
        present = not (8 <= t < 11)
        out += win.add(t * 33 * MS, kp[t] if present else None, conf[t] if present else None,
                       (640, 480))
    assert [p.stamp_ns // (33 * MS) for p in out] == list(range(20))
    assert [p.bridged for p in out].count(True) == 3
    filled = kp.copy()
    for t in (8, 9, 10):
        a = (t - 7) / 4
        filled[t] = (1 - a) * kp[7] + a * kp[11]
    ref = SequenceLifter(model, 'h36m').lift(filled, 640, 480)
    assert np.abs(np.stack([p.pose for p in out]) - ref).max() < 1e-5


def test_long_gap_backwards_time_and_size_change_reset():
    model, win = make_window(False, max_gap_frames=2, max_gap_s=0.5)
    kp, conf = frames(40)
    out = []
    for t in range(10):
        out += win.add(t * 33 * MS, kp[t], conf[t], (640, 480))
    for t in range(10, 14):  # person lost for 4 > 2 frames: segment ends, owed poses flushed
        out += win.add(t * 33 * MS, None, None, (640, 480))
    assert len(out) == 10 and win.stats.resets == 1
    out += win.add(14 * 33 * MS, kp[14], conf[14], (640, 480))
    out += win.add(5 * 33 * MS, kp[15], conf[15], (640, 480))  # bag loop: time backwards
    assert win.stats.resets == 2 and len(out) == 11
    out += win.add(6 * 33 * MS, kp[16], conf[16], (800, 600))  # new image size
    assert win.stats.resets == 3 and len(out) == 12
    out += win.add(6 * 33 * MS, kp[16], conf[16], (800, 600))  # duplicate stamp ignored
    assert win.stats.duplicates == 1
    out += win.add(60 * 33 * MS, kp[17], conf[17], (800, 600))  # minutes-long gap
    assert win.stats.resets == 4
    out += win.finish()
    assert len(out) == 14


def test_weak_and_nonfinite_joints_hold_last_value():
    model, win = make_window(True)
    kp, conf = frames(3)
    win.add(0, kp[0], conf[0], (640, 480))
    bad = kp[1].copy()
    bad[3] = np.nan
    c = conf[1].copy()
    c[5] = 0.0
    got = win.add(33 * MS, bad, c, (640, 480))
    assert np.all(np.isfinite(got[0].pose))
    assert win._last_kp[3].tolist() == kp[0][3].tolist()
    assert win._last_kp[5].tolist() == kp[0][5].tolist()
    assert win.add(66 * MS, np.full((17, 2), np.nan), conf[2], (640, 480)) == []


def test_infinite_confidence_is_no_confidence():
    model, win = make_window(True)
    kp, conf = frames(2)
    win.add(0, kp[0], conf[0], (640, 480))
    c = conf[1].copy()
    c[2], c[4] = np.inf, -np.inf
    got = win.add(33 * MS, kp[1], c, (640, 480))
    assert np.all(np.isfinite(got[0].confidence)) and got[0].confidence[2] == 0.0
    assert win._last_kp[2].tolist() == kp[0][2].tolist()  # held like any weak joint


@pytest.mark.parametrize('causal,block', [(True, 1), (False, 1), (False, 4)])
def test_window_that_empties_owes_nothing_and_survives_every_end(causal, block):
    """A person seen for 20 frames, then gone for 11 (> max_gap_frames): the segment ends
    with all 20 poses; every later end of the emptied window (the run's end, a second
    finish, a new image size or time going backwards with nobody there) owes nothing and
    raises nothing, live (StreamingLifter, deferred passes too) and offline (SegmentLifter)."""
    from vp3d_ros.core.lifter import lift_queued
    from vp3d_ros.core.lifter import SegmentLifter
    model = randomize_model(build_model(Architecture((3, 3, 3), 16, causal)), seed=2)
    kp, conf = frames(20)
    ref = SequenceLifter(model, 'h36m').lift(kp, 640, 480)
    makers = {
        'live': lambda w, h: StreamingLifter(model, 'h36m', width=w, height=h, block=block,
                                             deferred=block > 1),
        'offline': lambda w, h: SegmentLifter(SequenceLifter(model, 'h36m'), w, h),
    }
    for name, maker in makers.items():
        defer = name == 'live' and block > 1
        win = TrackWindow(maker, max_gap_frames=10)
        out = []
        for t in range(31):
            present = t < 20
            out += win.add(t * 33 * MS, kp[t] if present else None,
                           conf[t] if present else None, (640, 480))
            if defer:
                out += win.collect(lift_queued([win.lifter])[0])
        assert [p.stamp_ns for p in out] == [t * 33 * MS for t in range(20)], name
        assert np.abs(np.stack([p.pose for p in out]) - ref).max() < 1e-5, name
        assert win.stats.resets == 1 and win.fill == 0 and win.lifter.frames_pushed == 0
        if defer:
            assert lift_queued([win.lifter]) == [[]]
        assert win.finish() == [] and win.finish('ended') == []
        assert win.add(31 * 33 * MS, None, None, (800, 600)) == []  # new size, nobody
        assert win.add(2 * 33 * MS, None, None, (800, 600)) == []  # time backwards, nobody
        assert win.finish() == [] and win.stats.resets == 1, name
