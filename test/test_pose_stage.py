"""The 2D stage pose2d and vp3d-offline share (vp3d_ros.vision.pose_stage), on real MediaPipe and
real frames of the bundled clip: persons found and tracked, and the restart rules."""
import cv2
import numpy as np

from conftest import CLIP
from vp3d_ros.vision.pose_estimation import create_estimator
from vp3d_ros.vision.pose_stage import PoseStage
from vp3d_ros.core.tracking import PeopleTracking

MS = 1_000_000


def _frames(n):
    cap = cv2.VideoCapture(CLIP)
    out = []
    while len(out) < n:
        ok, bgr = cap.read()
        assert ok
        out.append(cv2.cvtColor(cv2.resize(bgr, (270, 480)), cv2.COLOR_BGR2RGB))
    return out


def test_stage_tracks_the_person_and_restarts_where_mediapipe_must():
    now = [0.0]
    stage = PoseStage(lambda: create_estimator('legacy', video_mode=True), 'h36m',
                      PeopleTracking(), size_restart_min_s=2.0, clock=lambda: now[0])
    frames = _frames(4)
    try:
        first = [stage.process(f, (i + 1) * 33 * MS) for i, f in enumerate(frames[:3])]
        assert all(d.ids == first[0].ids and len(d.ids) == 1 for d in first)
        assert first[0].keypoints.shape == (1, 17, 2) and first[0].landmarks.shape == (1, 33, 2)
        assert np.all(first[0].world[np.isfinite(first[0].world)] < 5)   # metres
        assert stage.restarted is None and first[0].size == (270, 480)
        # a new size restarts MediaPipe and the tracks (a new id) ...
        big = cv2.resize(frames[3], (540, 960))
        d = stage.process(big, 200 * MS)
        assert stage.restarted.kind == 'size' and d.ids and d.ids[0] > first[0].ids[0]
        assert np.median(d.keypoints[0] / first[-1].keypoints[0]) > 1.8   # pixels of 540x960
        # ... but not again within size_restart_min_s: that frame is skipped
        assert stage.process(frames[3], 233 * MS) is None
        now[0] = 2.5
        assert stage.process(frames[3], 266 * MS) is not None and stage.restarted.kind == 'size'
        # stamps going backwards (a looping bag): restarted, the graph's ms still increase
        d = stage.process(frames[0], 33 * MS)
        assert stage.restarted.kind == 'backwards' and len(d.ids) == 1
        d = stage.process(frames[1], 66 * MS)
        assert stage.restarted is None and len(d.ids) == 1
    finally:
        stage.close()


def test_stage_trades_back_the_limbs_mediapipe_names_the_wrong_way_round():
    """Bundled cam02 (real MediaPipe, full size): from frame 41 MediaPipe names the legs and
    arms the wrong way round. The stage trades them back in the mapped keypoints, their
    confidences and the 33 landmarks (image and world) alike; with repair_swaps off they
    come out as detected, and before the swap both agree."""
    from pathlib import Path
    from vp3d_ros.core.label_swaps import limb_permutation
    from vp3d_ros.core.skeletons import H36M17, MEDIAPIPE33
    video = Path(CLIP).with_name('balancing_cam02.mp4')
    cap = cv2.VideoCapture(str(video))
    frames = []
    while len(frames) < 52:
        ok, bgr = cap.read()
        assert ok
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    out = {}
    for repair in (True, False):
        stage = PoseStage(lambda: create_estimator('legacy', video_mode=True), 'h36m',
                          PeopleTracking(), repair_swaps=repair)
        try:
            out[repair] = [stage.process(f, (i + 1) * 16_666_667) for i, f in enumerate(frames)]
        finally:
            stage.close()
        assert (stage.swaps is not None) == repair
    both = limb_permutation(H36M17, [True, True])
    both33 = limb_permutation(MEDIAPIPE33, [True, True])
    for t in range(len(frames)):
        a, b = out[True][t], out[False][t]
        if t < 40:
            assert np.array_equal(a.keypoints, b.keypoints)
        elif t >= 42:
            assert np.array_equal(a.keypoints[0], b.keypoints[0][both]), t
            assert np.array_equal(a.confidence[0], b.confidence[0][both])
            assert np.array_equal(a.landmarks[0], b.landmarks[0][both33])
            assert np.array_equal(a.world[0], b.world[0][both33], equal_nan=True)
