"""Joint angles in bags (sensor_msgs/JointState, as the kinematics node publishes and the
recorder keeps them) read back and exported by vp3d-export: .mot in degrees, CSV, npz."""
import numpy as np

from vp3d_ros.cli.export import main as export_main
from vp3d_ros.io import bag_io, records
from vp3d_ros.io import joint_states as js
from vp3d_ros.io.bag_io import BagWriter
from vp3d_ros.kinematics.report import read_mot

TOPIC = '/kinematics/joint_states'
NAMES = ['pelvis_tilt', 'pelvis_tx', 'pelvis_ty', 'hip_flexion_r', 'knee_angle_r']


def _bag(path, n=12):
    ts = bag_io.typestore()
    JointState, Header, Time = (ts.types[t] for t in (
        'sensor_msgs/msg/JointState', 'std_msgs/msg/Header', 'builtin_interfaces/msg/Time'))
    rng = np.random.default_rng(3)
    q = rng.uniform(-1, 1, size=(n, len(NAMES)))
    stamps = 7 * 10**9 + np.arange(n) * 20_000_000
    with BagWriter(path) as w:
        w.add_topic(TOPIC, js.JOINT_STATE_TYPE)
        w.add_topic('/skeleton_3d/fused', records.CLOUD_TYPE)
        for k in range(n):
            s = int(stamps[k])
            names = NAMES if k != 4 else NAMES[:-1]           # one message without the knee
            msg = JointState(header=Header(stamp=Time(sec=s // 10**9, nanosec=s % 10**9),
                                           frame_id=''),
                             name=names, position=np.array(q[k, :len(names)]),
                             velocity=np.zeros(0), effort=np.zeros(0))
            w.write_msg(TOPIC, s + 5_000_000, msg)                 # bag time: arrival
            w.write_msg('/skeleton_3d/fused', s, records.make_cloud(
                rng.normal(size=(1, 17, 3)), np.ones((1, 17)), [0], s, 'world'))
    return stamps / 1e9, q


def test_joint_states_are_read_back_by_stamp_and_name(tmp_path):
    stamps, q = _bag(tmp_path / 'b')
    [tr] = js.read_joint_states(tmp_path / 'b')
    assert tr.topic == TOPIC and tr.names == tuple(NAMES) and tr.name == 'kinematics_joint_states'
    np.testing.assert_allclose(tr.stamps_s, stamps)
    assert np.isnan(tr.positions[4, 4]) and np.isfinite(np.delete(tr.positions, 4, 0)).all()
    np.testing.assert_allclose(np.delete(tr.positions, 4, 0), np.delete(q, 4, 0))
    deg = tr.in_degrees()
    np.testing.assert_allclose(deg[:, 1:3], q[:, 1:3])                  # translations: metres
    np.testing.assert_allclose(deg[0, [0, 3, 4]], np.degrees(q[0, [0, 3, 4]]))


def test_export_writes_mot_csv_npz_of_the_angles(tmp_path):
    stamps, q = _bag(tmp_path / 'b')
    assert export_main([str(tmp_path / 'b'), '--out-dir', str(tmp_path / 'all')]) == 0
    mot = read_mot(tmp_path / 'all' / 'kinematics_joint_states.mot')
    assert 'inDegrees=yes' in (tmp_path / 'all' / 'kinematics_joint_states.mot').read_text()
    np.testing.assert_allclose(mot['time'], stamps, atol=1e-6)
    np.testing.assert_allclose(mot['knee_angle_r'][:4], np.degrees(q[:4, 4]), atol=1e-6)
    np.testing.assert_allclose(mot['pelvis_ty'], q[:, 2], atol=1e-6)
    assert np.isnan(mot['knee_angle_r'][4])
    csv = (tmp_path / 'all' / 'kinematics_joint_states.csv').read_text().splitlines()
    assert csv[0] == ('time_s,pelvis_tilt_deg,pelvis_tx_m,pelvis_ty_m,hip_flexion_r_deg,'
                      'knee_angle_r_deg')
    assert csv[5].endswith(',')                                   # absent: an empty cell
    with np.load(tmp_path / 'all' / 'kinematics_joint_states.npz') as z:
        np.testing.assert_allclose(z['positions'][0], q[0])
        assert list(z['names']) == NAMES
    assert (tmp_path / 'all' / 'skeleton_3d_fused_p0.trc').exists()    # the skeletons too
    # only the angles, by topic
    assert export_main([str(tmp_path / 'b'), '--out-dir', str(tmp_path / 'only'),
                        '--topics', TOPIC, '--csv']) == 0
    assert sorted(p.name for p in (tmp_path / 'only').iterdir()) == [
        'kinematics_joint_states.csv']
