"""bag_io: rosbag2 round trips (mcap, sqlite3), metadata, splitting, errors, SIGKILL recovery."""
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml
from rosbags.interfaces import MessageDefinitionFormat
from rosbags.rosbag2 import Reader

from vp3d_ros.io import bag_io
from vp3d_ros.core import cloud_schema
from vp3d_ros.io.bag_io import BagError, BagWriter, open_bag, reindex

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOUD = 'sensor_msgs/msg/PointCloud2'
T3, T2 = '/cam01/skeleton_3d', '/cam01/keypoints_2d'


def cloud(i, dims=3, persons=2, joints=17):
    """Deterministic PointCloud2 (rosbags message) for frame i: cloud_schema.pack payload."""
    ts = bag_io.typestore().types
    rng = np.random.default_rng(1000 * dims + i)
    pts, conf = rng.normal(size=(persons, joints, dims)), rng.uniform(size=(persons, joints))
    lay = cloud_schema.layout_for(dims)
    n = persons * joints
    return ts[CLOUD](
        header=ts['std_msgs/msg/Header'](
            stamp=ts['builtin_interfaces/msg/Time'](sec=100 + i // 30, nanosec=(i % 30) * 33_333_333),
            frame_id='cam01_optical'),
        height=1, width=n,
        fields=[ts['sensor_msgs/msg/PointField'](name=nm, offset=o, datatype=7, count=1)
                for nm, o in zip(lay.names, lay.offsets)],
        is_bigendian=False, point_step=lay.point_step, row_step=lay.point_step * n,
        data=np.frombuffer(cloud_schema.pack(pts, conf, [3, 7][:persons]), np.uint8),
        is_dense=True), pts, conf


def raw(msg):
    return bytes(bag_io.typestore().serialize_cdr(msg, CLOUD))


def write_bag(path, storage, n=20, **kw):
    """n frames on T3 (via write, raw CDR) and T2 (via write_msg); returns what went in."""
    sent = []
    with BagWriter(path, storage=storage, **kw) as w:
        w.add_topic(T3, CLOUD)
        w.add_topic(T2, CLOUD)
        for i in range(n):
            m3, m2 = cloud(i)[0], cloud(i, dims=2)[0]
            w.write(T3, 10**9 + i * 10**8, raw(m3))
            w.write_msg(T2, 10**9 + i * 10**8 + 5, m2)
            sent += [(T3, CLOUD, 10**9 + i * 10**8, raw(m3)),
                     (T2, CLOUD, 10**9 + i * 10**8 + 5, raw(m2))]
    return sent


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_roundtrip_bytes_and_messages(tmp_path, storage):
    sent = write_bag(tmp_path / 'bag', storage)
    with open_bag(tmp_path / 'bag') as bag:
        assert bag.storage == storage
        assert bag.topics == {T2: (CLOUD, 20), T3: (CLOUD, 20)}
        got = list(bag.messages())
        assert got == sent  # time order, bytes untouched
        assert [m[0] for m in bag.messages([T3])] == [T3] * 20
        for topic, msgtype, _, data in got[:4]:
            msg = bag.deserialize(data, msgtype)
            dims = 3 if topic == T3 else 2
            i = (msg.header.stamp.sec - 100) * 30 + msg.header.stamp.nanosec // 33_333_333
            _, pts, conf = cloud(i, dims)
            out = cloud_schema.unpack(msg.data.tobytes(), [f.name for f in msg.fields],
                                      [f.offset for f in msg.fields], msg.point_step, msg.width)
            assert sorted(out) == [3, 7]
            np.testing.assert_array_equal(out[7][0], pts[1].astype(np.float32))
            np.testing.assert_array_equal(out[3][1], conf[0].astype(np.float32))
    info = yaml.safe_load((tmp_path / 'bag' / 'metadata.yaml').read_text())
    info = info['rosbag2_bagfile_information']
    assert info['version'] == 9 and info['storage_identifier'] == storage
    assert all(t['topic_metadata']['type_description_hash'].startswith('RIHS01_')
               for t in info['topics_with_message_count'])
    if storage == 'mcap':  # schemas embedded, so stock tools can decode
        with Reader(tmp_path / 'bag' / 'bag.mcap') as r:
            assert all(c.msgdef.format == MessageDefinitionFormat.MSG and 'PointField' in c.msgdef.data
                       for c in r.connections)
    assert not (tmp_path / 'bag' / bag_io.SIDECAR).exists()


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_metadata_roundtrip(tmp_path, storage):
    meta = {bag_io.META_LAYOUT_2D: 'coco', bag_io.META_LAYOUT_3D: 'h36m',
            bag_io.META_CHECKPOINT: {'path': '/m/x.bin', 'sha256': 'ab' * 32},
            bag_io.META_PARAMETERS: {'lifter': {'flip': True, 'rate': 30.0, 'widths': [3, 3]}},
            bag_io.META_SUBJECT: {'id': 'S1', 'height_m': 1.8}, 'count': 3, 'note': '42'}
    with BagWriter(tmp_path / 'b', storage=storage, metadata=meta) as w:
        w.add_topic(T3, CLOUD)
    with open_bag(tmp_path / 'b') as bag:
        assert bag.metadata == meta
        assert bag.message_count == 0
    custom = yaml.safe_load((tmp_path / 'b' / 'metadata.yaml').read_text())[
        'rosbag2_bagfile_information']['custom_data']
    assert all(isinstance(v, str) for v in custom.values())
    assert custom['note'] == '"42"'
    with pytest.raises(BagError, match='JSON'):
        BagWriter(tmp_path / 'c', metadata={'bad': object()})
    assert bag_io.decode_metadata({'foreign': 'not json'}) == {'foreign': 'not json'}


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_metadata_updated_while_open(tmp_path, storage):
    """A lifter's model announced after the bag opened: kept by the open part (also in the
    crash side file, which reindex restores from) and by every later split part."""
    import json
    size = len(raw(cloud(0)[0]))
    model = {'path': '/m/late.bin', 'sha256': 'cd' * 32, 'architecture': {'channels': 16}}
    w = BagWriter(tmp_path / 'run', storage=storage, metadata={bag_io.META_CHECKPOINT: {}},
                  split_max_bytes=3 * size)
    w.add_topic(T3, CLOUD)
    w.write(T3, 10**9, raw(cloud(0)[0]))
    w.update_metadata({bag_io.META_CHECKPOINT: model, bag_io.META_MODELS: [model]})
    side = json.loads((w.parts[-1] / bag_io.SIDECAR).read_text())
    assert json.loads(side[bag_io.META_CHECKPOINT]) == model
    for i in range(1, 7):
        w.write(T3, 10**9 + i, raw(cloud(i)[0]))
    w.close()
    assert len(w.parts) == 3
    with open_bag(tmp_path / 'run') as bag:
        assert bag.metadata == {bag_io.META_CHECKPOINT: model, bag_io.META_MODELS: [model]}
        assert all(json.loads(c[bag_io.META_CHECKPOINT]) == model for c in bag.custom_data)
    with pytest.raises(BagError, match='closed'):
        w.update_metadata({'x': 1})


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_split_by_size(tmp_path, storage):
    size = len(raw(cloud(0)[0]))
    sent = write_bag(tmp_path / 'run', storage, n=10, split_max_bytes=5 * size,
                     metadata={'k': 'v'})
    parts = bag_io.split_parts(tmp_path / 'run')
    assert [p.name for p in parts] == [f'run_{i}' for i in range(4)]
    for i, p in enumerate(parts):  # each part is a complete bag of its own
        with Reader(p) as r:
            assert r.message_count == 5
            assert sum(len(d) for _, _, d in r.messages()) <= 5 * size
            assert r.storage.metadata.custom['k'] == '"v"'
    with open_bag(tmp_path / 'run') as bag:
        assert list(bag.messages()) == sent
        assert bag.metadata == {'k': 'v'}
        assert bag.topics[T3].count == 10


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
@pytest.mark.parametrize('left', [b'', b'\x89MCAP0\r'])
def test_reindex_split_set_killed_as_a_part_opened(tmp_path, storage, left):
    """SIGKILL just after a split opened its next part leaves an empty (or magic-only)
    storage file there: reindex makes it an empty valid part, and the set reads whole."""
    size = len(raw(cloud(0)[0]))
    sent = write_bag(tmp_path / 'run', storage, n=10, split_max_bytes=5 * size)
    last = tmp_path / 'run' / 'run_4'
    last.mkdir()
    (last / f'run_4{".mcap" if storage == "mcap" else ".db3"}').write_bytes(left)
    with pytest.raises(BagError, match='reindex'):
        open_bag(tmp_path / 'run')
    recovered = reindex(tmp_path / 'run')
    assert [(r.path.name, r.messages) for r in recovered] == [('run_4', 0)]
    with open_bag(tmp_path / 'run') as bag:
        assert list(bag.messages()) == sent


def test_split_by_duration(tmp_path):
    sent = write_bag(tmp_path / 'run', 'mcap', n=25, split_max_duration_s=1.0)
    parts = bag_io.split_parts(tmp_path / 'run')
    assert len(parts) == 3
    for p in parts:
        with Reader(p) as r:
            stamps = [t for _, t, _ in r.messages()]
            assert max(stamps) - min(stamps) < 10**9
    with open_bag(tmp_path / 'run') as bag:
        assert list(bag.messages()) == sent


def test_refuses_bad_output_paths(tmp_path):
    (tmp_path / 'exists').mkdir()
    with pytest.raises(BagError, match='already exists'):
        BagWriter(tmp_path / 'exists')
    (tmp_path / 'file').write_text('x')
    with pytest.raises(BagError, match='not a directory'):
        BagWriter(tmp_path / 'file' / 'bag')
    with pytest.raises(BagError, match='cannot write under'):
        BagWriter('/proc/vp3d_no_such_dir/bag')
    with pytest.raises(BagError, match='storage'):
        BagWriter(tmp_path / 'x', storage='rosbag1')
    assert not (tmp_path / 'x').exists()


@pytest.mark.skipif(os.geteuid() == 0, reason='root ignores directory permissions')
def test_refuses_read_only_dir(tmp_path):
    ro = tmp_path / 'ro'
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(BagError, match='cannot write under'):
            BagWriter(ro / 'bag')
    finally:
        ro.chmod(0o700)


def test_usage_errors(tmp_path):
    w = BagWriter(tmp_path / 'b', storage='sqlite3')
    with pytest.raises(BagError, match='add_topic'):
        w.write(T3, 1, b'x')
    with pytest.raises(BagError, match='unknown message type'):
        w.add_topic('/x', 'nope_msgs/msg/Nope')
    w.add_topic(T3, CLOUD)
    w.add_topic(T3, CLOUD)  # idempotent
    from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness,
                                    QosReliability, QosTime)
    never = QosTime(0x7FFFFFFF, 0xFFFFFFFF)
    w.add_topic('/latched', 'std_msgs/msg/String',
                Qos(QosHistory.KEEP_LAST, 1, QosReliability.RELIABLE,
                    QosDurability.TRANSIENT_LOCAL, never, never, QosLiveliness.AUTOMATIC,
                    never, False))
    with pytest.raises(BagError, match='already added'):
        w.add_topic(T3, 'std_msgs/msg/String')
    w.close()
    w.close()
    with pytest.raises(BagError, match='closed'):
        w.write(T3, 1, b'x')
    topics = yaml.safe_load((tmp_path / 'b' / 'metadata.yaml').read_text())[
        'rosbag2_bagfile_information']['topics_with_message_count']
    (latched,) = [t['topic_metadata'] for t in topics if t['topic_metadata']['name'] == '/latched']
    assert 'transient_local' in str(latched['offered_qos_profiles']).lower()
    with pytest.raises(BagError, match='no bag'):
        open_bag(tmp_path / 'missing')
    with pytest.raises(BagError, match='not a rosbag2 bag'):
        open_bag(tmp_path)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_write_error_keeps_what_was_written(tmp_path, storage):
    w = BagWriter(tmp_path / 'b', storage=storage)
    w.add_topic(T3, CLOUD)
    data = [raw(cloud(i)[0]) for i in range(8)]
    for i in range(5):
        w.write(T3, i + 1, data[i])

    def full(*a, **k):
        raise OSError(28, 'No space left on device')
    w._writer.storage.write = full
    with pytest.raises(BagError, match='No space left.*keeps 5 messages'):
        w.write(T3, 6, data[5])
    with pytest.raises(BagError, match='closed'):
        w.write(T3, 7, data[6])
    w.close()
    with open_bag(tmp_path / 'b') as bag:
        assert [d for _, _, _, d in bag.messages()] == data[:5]


CHILD = textwrap.dedent('''
    import sys, time
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {testdir!r})
    from test_bag_io import cloud, raw, T3, CLOUD
    from vp3d_ros.io.bag_io import BagWriter
    w = BagWriter({path!r}, storage={storage!r}, metadata={{'vp3d.layout_3d': 'h36m'}},
                  flush_interval_s={interval!r}, split_max_bytes={split!r})
    w.add_topic(T3, CLOUD)
    for i in range(57):
        w.write(T3, 10**9 + i * 10**7, raw(cloud(i)[0]))
        if i == 49:
            w.flush()
    print('ready', flush=True)
    time.sleep(120)
''')


@pytest.mark.parametrize('storage,interval,split,expect', [
    ('mcap', 1e9, 0, 50), ('sqlite3', 1e9, 0, 50), ('mcap', 0.0, 0, 57),
    ('sqlite3', 1e9, 20_000, 50)])
def test_sigkill_then_reindex(tmp_path, storage, interval, split, expect):
    path = tmp_path / 'rec'
    code = CHILD.format(repo=REPO, testdir=os.path.dirname(__file__), path=str(path),
                        storage=storage, interval=interval, split=split)
    proc = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'ready'
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with pytest.raises(BagError, match='reindex'):
        open_bag(path)
    recovered = reindex(path)
    assert len(recovered) == 1 and sum(r.messages for r in recovered) <= expect
    if storage == 'mcap':
        assert recovered[0].discarded_bytes >= 0
    with open_bag(path) as bag:
        got = [d for _, _, _, d in bag.messages()]
        assert got == [raw(cloud(i)[0]) for i in range(expect)]
        assert bag.metadata == {'vp3d.layout_3d': 'h36m'}
        assert bag.custom_data[-1][bag_io.META_RECOVERED]
    bag_dir = recovered[0].path
    assert list(bag_dir.glob('*.unindexed')) and not (bag_dir / bag_io.SIDECAR).exists()
    assert reindex(path) == []  # nothing left to do


def test_reindex_of_file_size_limit(tmp_path):
    """A real write failure (file size limit, like a full disk) then recovery."""
    code = textwrap.dedent(f'''
        import resource, signal, sys
        sys.path.insert(0, {REPO!r}); sys.path.insert(0, {os.path.dirname(__file__)!r})
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        from test_bag_io import cloud, raw, T3, CLOUD
        from vp3d_ros.io.bag_io import BagWriter, BagError
        w = BagWriter({str(tmp_path / 'rec')!r}, flush_interval_s=0.0)
        w.add_topic(T3, CLOUD)
        resource.setrlimit(resource.RLIMIT_FSIZE, (30_000, 30_000))
        try:
            for i in range(500):
                w.write(T3, 10**9 + i, raw(cloud(i)[0]))
        except BagError as e:
            print(i, e)
    ''')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=60)
    assert 'failed' in out.stdout, out.stderr
    n_failed = int(out.stdout.split()[0])
    if not (tmp_path / 'rec' / 'metadata.yaml').exists():
        assert 'reindex' in out.stdout
        reindex(tmp_path / 'rec')
    with open_bag(tmp_path / 'rec') as bag:
        got = [d for _, _, _, d in bag.messages()]
    assert 0 < len(got) <= n_failed
    assert got == [raw(cloud(i)[0]) for i in range(len(got))]


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_foreign_type_and_lost_metadata_yaml(tmp_path, storage):
    """A bag with a non-stock type (written by plain rosbags) whose metadata.yaml is lost."""
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore, get_types_from_msg
    store = get_typestore(Stores.EMPTY)
    store.register(get_types_from_msg('int32 a\nstring b', 'my_msgs/msg/Foo'))
    foo = store.types['my_msgs/msg/Foo']
    with Writer(tmp_path / 'b', version=9, storage_plugin=bag_io.STORAGES[storage]) as w:
        c = w.add_connection('/foo', 'my_msgs/msg/Foo', typestore=store)
        for i in range(3):
            w.write(c, i, store.serialize_cdr(foo(a=i, b=f'x{i}'), 'my_msgs/msg/Foo'))
    with open_bag(tmp_path / 'b') as bag:
        assert [m.b for *_, m in bag.read_messages()] == ['x0', 'x1', 'x2']
    (tmp_path / 'b' / 'metadata.yaml').unlink()
    (rec,) = reindex(tmp_path / 'b', keep_original=False)
    assert rec.messages == 3 and rec.topics == {'/foo': 3}
    assert not list((tmp_path / 'b').glob('*.unindexed'))
    with open_bag(tmp_path / 'b') as bag:
        assert [m.a for *_, m in bag.read_messages(['/foo'])] == [0, 1, 2]


_UNWRITABLE = textwrap.dedent('''
    import os, sys
    sys.path.insert(0, sys.argv[1])
    from test_bag_io import cloud, raw, T3, CLOUD
    from vp3d_ros.io.bag_io import BagError, BagWriter
    bag = os.path.join(sys.argv[2], 'bag')
    w = BagWriter(bag, storage=sys.argv[3], split_max_bytes=20_000, flush_interval_s=0.0)
    w.add_topic(T3, CLOUD)
    for i in range(1000):
        if i == 5:  # the bag directory becomes unwritable while recording
            os.chmod(bag, 0o555)
            for part in os.listdir(bag):
                os.chmod(os.path.join(bag, part), 0o555)
        try:
            w.write(T3, 10**9 + i * 10**8, raw(cloud(i)[0]))
        except BagError as e:
            print('ERROR:', e)
            break
''')


def _without_dac_override():
    """Root, but subject to file permissions like any user: drop CAP_DAC_OVERRIDE and
    CAP_DAC_READ_SEARCH from the capability bounding set before exec (prctl
    PR_CAPBSET_DROP), so the exec'ed writer's effective set lacks them."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2):  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH
        if libc.prctl(24, cap, 0, 0, 0) != 0:
            os._exit(77)


@pytest.mark.parametrize('storage', ['mcap', 'sqlite3'])
def test_unwritable_bag_directory_names_its_cause(tmp_path, storage):
    """The bag directory becomes unwritable while recording (EACCES): the error says
    "permission denied" and to make the directory writable, not "free disk space". The
    writer runs without the capability that lets root ignore directory permissions."""
    import shutil
    work = str(tmp_path / 'w')
    os.mkdir(work)
    try:
        root = os.geteuid() == 0
        res = subprocess.run([sys.executable, '-c', _UNWRITABLE, os.path.join(REPO, 'test'), work,
                              storage], capture_output=True, text=True, timeout=120,
                             preexec_fn=_without_dac_override if root else None,
                             env={**os.environ, 'PYTHONPATH': REPO})
        if res.returncode == 77:
            pytest.skip('cannot drop CAP_DAC_OVERRIDE here (no CAP_SETPCAP)')
        assert 'ERROR:' in res.stdout, res.stdout + res.stderr
        err = res.stdout.split('ERROR:', 1)[1]
        assert 'permission denied' in err and 'make the bag directory writable again' in err, err
        assert 'free disk space' not in err.lower() and 'free space' not in err.lower(), err
    finally:
        for d, _, _ in os.walk(work):
            os.chmod(d, 0o755)
        shutil.rmtree(work, ignore_errors=True)


def test_io_cause_by_errno():
    """Real errors from real system calls, mapped to their cause and advice."""
    try:
        with open('/dev/full', 'w') as f:  # ENOSPC, as on a full disk
            f.write('x')
            f.flush()
    except OSError as e:
        full = e
    assert bag_io.io_cause(full) == ('the disk is full', 'free disk space')
    assert bag_io.io_cause(BagError('x'))[1] != 'free disk space'
    for code, words in ((13, 'permission denied'), (30, 'read-only'), (5, 'input/output')):
        assert words in bag_io.io_cause(OSError(code, os.strerror(code)))[0]


def test_read_only_file_system_names_its_cause(tmp_path):
    """A bag directory on a file system mounted read-only (what the kernel does after disk
    errors): the error says "read-only" and what to check, not "free disk space". Needs
    mount (root/CAP_SYS_ADMIN): a small tmpfs remounted read-only. (Mid-recording, a remount
    is refused while the bag's files are open; the same errno mapping, io_cause, words the
    write errors: test_unwritable_bag_directory_names_its_cause.)"""
    mnt = tmp_path / 'mnt'
    mnt.mkdir()
    try:
        subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mnt)], check=True,
                       capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        pytest.skip('cannot mount a tmpfs here (needs CAP_SYS_ADMIN)')
    try:
        subprocess.run(['mount', '-o', 'remount,ro', str(mnt)], check=True,
                       capture_output=True, timeout=10)
        with pytest.raises(BagError) as err:
            BagWriter(mnt / 'bag')
        text = str(err.value)
        assert 'Read-only file system' in text and 'remount it read-write' in text, text
        assert 'free' not in text.lower(), text
    finally:
        subprocess.run(['umount', '-l', str(mnt)], capture_output=True, timeout=10)
