"""records + vp3d-export: bag -> tracks -> CSV / TRC / npz, values checked against the bag."""
import csv
import math

import numpy as np
import pytest

from vp3d_ros.io import bag_io, records
from vp3d_ros.io.bag_io import BagWriter
from vp3d_ros.cli.export import main as export_main
from vp3d_ros.io.records import Track
from vp3d_ros.core.skeletons import COCO17, H36M17

CLOUD = 'sensor_msgs/msg/PointCloud2'
C1_3D, C1_2D, C2_3D = '/cam01/skeleton_3d', '/cam01/keypoints_2d', '/cam02/skeleton_3d'
FRAMES = [i for i in range(12) if i != 6]  # a dropped frame: intervals are not all equal
ABSENT = {3, 4, 8}  # frames of /cam01/skeleton_3d without person 1 (8: nobody at all)


def stamp_ns(i):
    return 5 * 10**9 + round(i * 1e9 / 30)


def make_bag(path, storage='mcap', **kw):
    """Writes the scene; returns {(topic, person): (stamps_s, positions, confidence)}."""
    rng = np.random.default_rng(0)
    plan = {C1_3D: (3, [0, 1]), C2_3D: (3, [4]), C1_2D: (2, [0])}
    expect = {(t, p): ([], [], []) for t, (_, ps) in plan.items() for p in ps}
    meta = {bag_io.META_LAYOUT_2D: 'coco', bag_io.META_FORMAT: 'LandmarkRecord/1'}
    with BagWriter(path, storage=storage, metadata=meta, **kw) as w:
        for t in [*plan, '/lidar/points']:
            w.add_topic(t, CLOUD)
        w.add_topic('/chatter', 'std_msgs/msg/String')
        for i in FRAMES:
            for topic, (dims, persons) in plan.items():
                here = [p for p in persons if not (topic == C1_3D and (
                    (p == 1 and i in ABSENT) or i == 8))]
                pts = rng.normal(size=(len(here), 17, dims)) * (1.0 if dims == 3 else 300.0)
                conf = rng.uniform(size=(len(here), 17))
                msg = records.make_cloud(pts, conf, here, stamp_ns(i), 'cam_optical')
                w.write_msg(topic, stamp_ns(i) + 2_000_000, msg)  # bag time: arrival
                for p in persons:
                    e = expect[(topic, p)]
                    e[0].append(stamp_ns(i) / 1e9)
                    if p in here:
                        k = here.index(p)
                        e[1].append(pts[k].astype(np.float32).astype(float))
                        e[2].append(conf[k].astype(np.float32).astype(float))
                    else:
                        e[1].append(np.full((17, dims), np.nan))
                        e[2].append(np.zeros(17))
            lidar = records.make_cloud(rng.normal(size=(1, 5, 3)), np.ones((1, 5)))
            lidar.fields[3].name = 'intensity'  # not a keypoint cloud
            w.write_msg('/lidar/points', stamp_ns(i), lidar)
            w.write_msg('/chatter', stamp_ns(i),
                        bag_io.typestore().types['std_msgs/msg/String'](data='hi'))
    return {k: tuple(np.array(x) for x in v) for k, v in expect.items()}


@pytest.fixture
def scene(tmp_path):
    return tmp_path / 'bag', make_bag(tmp_path / 'bag')


def by_key(tracks):
    return {(t.topic, t.person): t for t in tracks}


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_tracks_match_bag(tmp_path, storage):
    expect = make_bag(tmp_path / 'b', storage)
    tracks = records.read_landmark_tracks(tmp_path / 'b')
    assert [(t.topic, t.person) for t in tracks] == [
        (C1_2D, 0), (C1_3D, 0), (C1_3D, 1), (C2_3D, 4)]
    for key, tr in by_key(tracks).items():
        stamps, pos, conf = expect[key]
        np.testing.assert_array_equal(tr.stamps_s, stamps)  # header stamps, not bag time
        np.testing.assert_array_equal(tr.positions, pos)
        np.testing.assert_array_equal(tr.confidence, conf)
        assert tr.joint_names == (COCO17.joints if tr.dims == 2 else H36M17.joints)
    absent = by_key(tracks)[(C1_3D, 1)]
    rows = [FRAMES.index(i) for i in sorted(ABSENT)]
    assert np.isnan(absent.positions[rows]).all() and not absent.confidence[rows].any()
    assert [t.person for t in records.read_landmark_tracks(tmp_path / 'b', [C2_3D])] == [4]
    with pytest.raises(ValueError, match='not PointCloud2'):
        records.read_landmark_tracks(tmp_path / 'b', ['/chatter'])


def test_split_bag_reads_like_one(tmp_path):
    expect = make_bag(tmp_path / 'b', split_max_duration_s=0.1)
    assert len(bag_io.split_parts(tmp_path / 'b')) > 2
    for key, tr in by_key(records.read_landmark_tracks(tmp_path / 'b')).items():
        np.testing.assert_array_equal(tr.positions, expect[key][1])


def test_csv(scene, tmp_path):
    bag, expect = scene
    tr = by_key(records.read_landmark_tracks(bag))[(C1_3D, 1)]
    recs = records.track_to_records(tr)
    assert len(recs) == len(FRAMES) * 17 and recs[1].landmark == 'RHip'
    records.write_csv(tr, tmp_path / 'p1.csv')
    with open(tmp_path / 'p1.csv', newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['timestamp_s', 'landmark', 'x_m', 'y_m', 'z_m', 'visibility']
    rows = rows[1:]
    assert len(rows) == len(FRAMES) * 17
    stamps, pos, conf = expect[(C1_3D, 1)]
    for n, row in enumerate(rows):
        t, j = divmod(n, 17)
        assert float(row[0]) == pytest.approx(stamps[t], abs=1e-9)
        assert row[1] == H36M17.joints[j]
        if FRAMES[t] in ABSENT:
            assert row[2:5] == ['', '', ''] and float(row[5]) == 0
        else:
            assert [np.float32(float(v)) for v in row[2:5]] == list(pos[t, j].astype(np.float32))
            assert np.float32(float(row[5])) == np.float32(conf[t, j])
    tr2 = by_key(records.read_landmark_tracks(bag))[(C1_2D, 0)]
    with pytest.raises(ValueError, match='2D'):
        records.write_csv(tr2, tmp_path / 'x.csv')
    assert math.isnan(records.track_to_records(tr2, allow_2d=True)[0].z_m)


def test_csv_2d_columns_are_pixels(scene, tmp_path):
    bag, expect = scene
    tr2 = by_key(records.read_landmark_tracks(bag))[(C1_2D, 0)]
    records.write_csv(tr2, tmp_path / 'kp.csv', allow_2d=True)
    with open(tmp_path / 'kp.csv', newline='') as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['timestamp_s', 'landmark', 'x_px', 'y_px', 'confidence']
    stamps, pos, conf = expect[(C1_2D, 0)]
    assert len(rows) == 1 + len(FRAMES) * 17
    for n, row in enumerate(rows[1:]):
        t, j = divmod(n, 17)
        assert len(row) == 5 and row[1] == COCO17.joints[j]
        assert float(row[0]) == pytest.approx(stamps[t], abs=1e-9)
        assert [np.float32(float(v)) for v in row[2:4]] == list(pos[t, j].astype(np.float32))
        assert np.float32(float(row[4])) == np.float32(conf[t, j])


def test_trc(scene, tmp_path):
    bag, expect = scene
    tr = by_key(records.read_landmark_tracks(bag))[(C1_3D, 1)]
    records.write_trc(tr, tmp_path / 'p1.trc')
    lines = (tmp_path / 'p1.trc').read_text().split('\n')
    assert lines[0].split('\t') == ['PathFileType', '4', '(X/Y/Z)', 'p1.trc']
    assert lines[1].split('\t') == ['DataRate', 'CameraRate', 'NumFrames', 'NumMarkers', 'Units',
                                    'OrigDataRate', 'OrigDataStartFrame', 'OrigNumFrames']
    vals = lines[2].split('\t')
    assert vals[0] == vals[1] == vals[5] == '30'  # 33333333/33333334 ns intervals: 30 fps
    assert vals[2:5] == [str(len(FRAMES)), '17', 'm'] and vals[6:] == ['1', str(len(FRAMES))]
    head = lines[3].split('\t')
    assert head[:2] == ['Frame#', 'Time'] and len(head) == 2 + 3 * 17
    assert head[2::3] == [j.replace('/', '_') for j in H36M17.joints]
    assert set(head[3::3] + head[4::3]) == {''}
    assert lines[4].split('\t') == ['', ''] + [f'{a}{i}' for i in range(1, 18) for a in 'XYZ']
    assert lines[5] == ''
    data = [ln.split('\t') for ln in lines[6:] if ln]
    assert len(data) == len(FRAMES)
    stamps, pos, _ = expect[(C1_3D, 1)]
    for t, cells in enumerate(data):
        assert len(cells) == 2 + 3 * 17 and int(cells[0]) == t + 1
        assert float(cells[1]) == pytest.approx(stamps[t] - stamps[0], abs=1e-6)
        xyz = cells[2:]
        if FRAMES[t] in ABSENT:
            assert set(xyz) == {'NaN'}  # missing markers (OpenSim drops trailing blanks)
        else:
            got = np.array([float(v) for v in xyz], dtype=np.float32).reshape(17, 3)
            np.testing.assert_array_equal(got, pos[t].astype(np.float32))
    with pytest.raises(ValueError, match='2D'):
        records.write_trc(by_key(records.read_landmark_tracks(bag))[(C1_2D, 0)], tmp_path / 'x')


def test_npz_roundtrip(scene, tmp_path):
    bag, _ = scene
    tracks = records.read_landmark_tracks(bag)
    dup = tracks + [tracks[0]]
    records.write_npz(dup, tmp_path / 'all.npz')
    back = records.read_npz(tmp_path / 'all.npz')
    assert len(back) == len(dup)
    for a, b in zip(dup, back):
        assert (a.topic, a.person, a.joint_names) == (b.topic, b.person, b.joint_names)
        for x, y in zip(a[3:], b[3:]):
            np.testing.assert_array_equal(x, y)
    with np.load(tmp_path / 'all.npz') as z:
        assert list(z['tracks']) == ['cam01_keypoints_2d_p0', 'cam01_skeleton_3d_p0',
                                     'cam01_skeleton_3d_p1', 'cam02_skeleton_3d_p4',
                                     'cam01_keypoints_2d_p0_1']
        assert z['cam01_skeleton_3d_p1__positions'].shape == (len(FRAMES), 17, 3)


def test_single_frame_and_generic_2d_names(tmp_path):
    with BagWriter(tmp_path / 'b', storage='sqlite3') as w:
        w.add_topic(C1_2D, CLOUD)
        w.write_msg(C1_2D, 7, records.make_cloud(np.zeros((1, 5, 2)), np.ones((1, 5))))
    (tr,) = records.read_landmark_tracks(tmp_path / 'b')
    assert tr.joint_names == tuple(f'joint_{i}' for i in range(5))
    assert tr.stamps_s.tolist() == [7e-9]  # zero header stamp: bag time
    t3 = Track('/c/skeleton_3d', 0, H36M17.joints, np.array([1.0]), np.zeros((1, 17, 3)),
               np.ones((1, 17)))
    records.write_trc(t3, tmp_path / 'one.trc')
    assert (tmp_path / 'one.trc').read_text().split('\n')[2].startswith('0\t0\t1\t17\t')


@pytest.mark.parametrize('fps, expected, text', [
    (60, 60.0, '60'), (15, 15.0, '15'), (25, 25.0, '25'),
    (30000 / 1001, 29.97, '29.97'), (24000 / 1001, 23.976, '23.976'), (59.2, 59.2, '59.2'),
    (120, 120.0, '120')])
def test_data_rate_rounding(fps, expected, text):
    """Stamps as a recorder or vp3d-offline writes them (whole nanoseconds of i / fps)."""
    stamps = np.array([round(i * 1e9 / fps) for i in range(200)]) / 1e9
    if fps == 60:  # what the TRC said before rounding
        assert f'{1 / np.median(np.diff(stamps)):.6f}' == '59.999999'
    assert records.data_rate(stamps) == expected
    assert records.format_rate(records.data_rate(stamps)) == text
    jitter = stamps + np.random.default_rng(0).normal(0, 2e-4, len(stamps))  # live camera
    assert abs(records.data_rate(jitter) - fps) < 0.05 * fps
    assert records.data_rate(stamps[:1]) == 0.0 and records.format_rate(0.0) == '0'


def test_cli_exports(scene, tmp_path, capsys):
    bag, _ = scene
    out = tmp_path / 'out'
    assert export_main([str(bag), '--out-dir', str(out)]) == 0
    names = sorted(p.name for p in out.iterdir())
    stems = ['cam01_skeleton_3d_p0', 'cam01_skeleton_3d_p1', 'cam02_skeleton_3d_p4']
    assert names == sorted(f'{s}.{e}' for s in stems for e in ('csv', 'trc', 'npz'))
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(out / n) for n in names)

    out2 = tmp_path / 'out2'
    assert export_main([str(bag), '--out-dir', str(out2), '--csv', '--include-2d',
                        '--topics', C1_2D, C2_3D]) == 0
    assert sorted(p.name for p in out2.iterdir()) == ['cam01_keypoints_2d_p0.csv',
                                                      'cam02_skeleton_3d_p4.csv']
    out3 = tmp_path / 'out3'
    assert export_main([str(bag), '--out-dir', str(out3), '--include-2d', '--topics', C1_2D]) == 0
    assert sorted(p.name for p in out3.iterdir()) == ['cam01_keypoints_2d_p0.csv',
                                                      'cam01_keypoints_2d_p0.npz']
    assert (out3 / 'cam01_keypoints_2d_p0.csv').read_text().startswith(
        'timestamp_s,landmark,x_px,y_px,confidence\n')


def test_cli_refuses_to_overwrite(scene, tmp_path, capsys):
    bag, _ = scene
    out = tmp_path / 'out'
    assert export_main([str(bag), '--out-dir', str(out), '--csv']) == 0
    capsys.readouterr()
    first = out / 'cam01_skeleton_3d_p0.csv'
    first.write_text('mine\n')
    # a second export over the same names writes nothing at all, not even the new TRC files
    assert export_main([str(bag), '--out-dir', str(out)]) == 2
    err = capsys.readouterr().err
    assert 'already exist' in err and '--overwrite' in err and str(first) in err, err
    assert first.read_text() == 'mine\n' and sorted(p.suffix for p in out.iterdir()) == ['.csv'] * 3
    (out / 'unrelated.txt').write_text('kept')
    assert export_main([str(bag), '--out-dir', str(out), '--overwrite']) == 0
    assert first.read_text().startswith('timestamp_s,landmark,x_m,y_m,z_m,visibility\n')
    assert len(list(out.glob('*.trc'))) == 3 and (out / 'unrelated.txt').read_text() == 'kept'
    assert export_main([str(bag), '--out-dir', str(tmp_path / 'other'), '--csv']) == 0


def test_nobody_detected(tmp_path, capsys):
    """A video with nobody in it: keypoint topics with empty clouds only."""
    with BagWriter(tmp_path / 'nobody') as w:
        for t in (C1_2D, C1_3D):
            w.add_topic(t, CLOUD)
        for i in range(5):
            w.write_msg(C1_2D, stamp_ns(i), records.make_cloud(np.zeros((0, 17, 2)),
                                                               np.zeros((0, 17)), [], stamp_ns(i)))
            w.write_msg(C1_3D, stamp_ns(i), records.make_cloud(np.zeros((0, 17, 3)),
                                                               np.zeros((0, 17)), [], stamp_ns(i)))
    assert records.read_landmark_tracks(tmp_path / 'nobody') == []
    assert records.keypoint_topic_frames(tmp_path / 'nobody') == [
        (C1_2D, 2, 5, 0), (C1_3D, 3, 5, 0)]
    out = tmp_path / 'out'
    for extra in ([], ['--include-2d']):
        assert export_main([str(tmp_path / 'nobody'), '--out-dir', str(out), *extra]) == 2
        err = capsys.readouterr().err
        assert 'nobody was detected' in err and f'{C1_3D} has 5 frame(s), none with a person' in err
        assert 'no keypoint topics' not in err, err
    assert not out.exists()
    make_bag(tmp_path / 'some')  # people on some frames: counted
    assert (C1_3D, 3, len(FRAMES), len(FRAMES) - 1) in records.keypoint_topic_frames(
        tmp_path / 'some')


def test_cli_bad_input(scene, tmp_path, capsys):
    bag, _ = scene
    out = str(tmp_path / 'o')
    assert export_main([str(tmp_path / 'nope'), '--out-dir', out]) == 2
    assert 'no bag' in capsys.readouterr().err
    assert export_main([str(bag), '--out-dir', out, '--topics', C1_2D]) == 2
    assert '--include-2d' in capsys.readouterr().err
    assert export_main([str(bag), '--out-dir', out, '--topics', '/nope']) == 2
    assert 'not PointCloud2' in capsys.readouterr().err
    with BagWriter(tmp_path / 'empty') as w:
        w.add_topic('/chatter', 'std_msgs/msg/String')
    assert export_main([str(tmp_path / 'empty'), '--out-dir', out]) == 2
    assert 'no keypoint topics' in capsys.readouterr().err
    (tmp_path / 'notabag').mkdir()
    assert export_main([str(tmp_path / 'notabag'), '--out-dir', out]) == 2
    assert 'not a rosbag2 bag' in capsys.readouterr().err
    assert not (tmp_path / 'o').exists()
