"""Stopped the way `ros2 launch` stops a rig without a terminal (a script, systemd, CI,
`timeout`): the launch's process group gets SIGINT, and launch forwards SIGINT to every node
itself, so each node gets two. Real nodes over DDS: video_source -> pose2d -> lifter
(symmetric, so the last (RF-1)/2 poses are still owed when the signals come) -> recorder."""
import os
import signal
import time

from conftest import CLIP
from ros_harness import stamps_ns
from test_robustness_common import rig  # noqa: F401  (fixture)

CAM = 'cam01'
KP, SK = f'/{CAM}/keypoints_2d', f'/{CAM}/skeleton_3d'
RF = 27  # filter widths 3, 3, 3


def _group_member(leader: list):
    """preexec_fn: the first process leads a new process group, the others join it (the
    nodes of one ros2 launch share its group)."""
    def join():
        if leader:
            os.setpgid(0, leader[0])
        else:
            os.setpgrp()
    return join


def test_launch_double_sigint_shuts_down_cleanly_with_every_pose(rig, make_checkpoint,
                                                                   tmp_path):
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import PointCloud2
    from vp3d_ros.io.bag_io import open_bag
    start, client, _ = rig
    ckpt, _ = make_checkpoint((3, 3, 3), 32, causal=False)
    leader = []
    procs = {}

    def node(name, exe, *args):
        procs[name] = start(exe, *args, name=name, preexec_fn=_group_member(leader))
        leader[:] = leader or [procs[name].pid]

    node('recorder', 'recorder_node', '-p', f'bag_dir:={tmp_path}', '-p', 'bag_name:=bag',
         '-p', f'topics:=[{KP}, {SK}]')
    node('lifter', 'lifter_node', '-p', f'cameras:=[{CAM}]', '-p', f'checkpoint:={ckpt}',
         '-p', 'filter_widths:=[3, 3, 3]', '-p', 'channels:=32', '-p', 'causal:=false',
         '-p', 'mode:=symmetric', '-p', 'idle_flush_s:=60.0', '-p', 'max_gap_s:=5.0')
    node('pose2d', 'pose2d_node', '-r', f'__ns:=/{CAM}')
    # As the launch file starts it: playing once the pipeline is up and recorded.
    node('video_source', 'video_source', '-r', f'__ns:=/{CAM}', '-p', f'video:={CLIP}',
         '-p', 'loop:=true', '-p', 'rate:=8.0',
         '-p', f'wait_for_topics:=[keypoints_2d, {SK}]')
    assert len({os.getpgid(p.pid) for p in procs.values()}) == 1
    client.collect(PointCloud2, KP, latched=True)
    client.collect(PointCloud2, SK, latched=True)
    # Streaming, with skeletons flowing: the symmetric lifter owes the newest frames' poses.
    assert client.wait_for(lambda: len(client.messages(SK)) >= 5, 180), \
        {n: p.log()[-2000:] for n, p in procs.items()}
    assert all(p.alive() for p in procs.values())
    # What ros2 launch --noninteractive does on SIGINT: the group's copy, then its own.
    os.killpg(leader[0], signal.SIGINT)
    time.sleep(0.05)
    for p in procs.values():
        if p.alive():
            os.kill(p.pid, signal.SIGINT)
    codes = {n: p.wait_exit(30) for n, p in procs.items()}
    logs = {n: p.log() for n, p in procs.items()}
    assert codes == dict.fromkeys(procs, 0), (codes, logs)
    for name, log in logs.items():
        for bad in ('Traceback', 'KeyboardInterrupt', '[FATAL]', 'Exception in'):
            assert bad not in log, f'{name}: {bad!r} in its log:\n{log[-3000:]}'
    assert 'bag closed' in logs['recorder'], logs['recorder']
    with open_bag(tmp_path / 'bag') as bag:  # header stamps (the bag's times are arrivals)
        stamps = {t: sorted(stamps_ns([deserialize_message(raw, PointCloud2)
                                       for _, _, _, raw in bag.messages([t])])) for t in (KP, SK)}
    kp, sk = stamps[KP], stamps[SK]
    # Every frame recorded got its pose into the bag, the last ones (owed by the symmetric
    # lifter at the signal) included; frames kept streaming past the first skeletons.
    assert len(kp) >= 5 + (RF - 1) // 2, (len(kp), len(sk))
    assert set(kp) <= set(sk), (f'{len(set(kp) - set(sk))} of {len(kp)} frames without a pose '
                                f'(last kp {kp[-3:]}, last sk {sk[-3:]})')
    seen = set(stamps_ns(client.messages(KP)))
    assert set(sk) <= seen | set(kp)


def test_signal_policy_repeat_ignored_later_one_cuts_drain_then_interrupts_close():
    """The rule each node's run_node follows (common._Stop), signal by signal."""
    import pytest
    from vp3d_ros.nodes.common import _Stop
    stop = _Stop(grace_s=0.2)
    try:
        stop._handle(signal.SIGINT, None)  # the group's copy: drain, then close
        assert stop.requested and not stop.abort
        stop._handle(signal.SIGINT, None)  # launch's own copy, moments later: the same request
        assert not stop.abort and stop.repeats == 1
        time.sleep(0.3)
        stop._handle(signal.SIGTERM, None)  # later (launch escalating): stop draining now
        assert stop.abort
        stop.closing = True  # close() runs: one more interrupts it
        with pytest.raises(KeyboardInterrupt):
            stop._handle(signal.SIGINT, None)
        stop.done = True  # closed: the process is going away, signals are moot
        stop._handle(signal.SIGINT, None)
        assert stop.repeats == 2
    finally:
        stop.restore()
