"""The offline stages of one camera: 2D on every frame (pose2d's own stage), lifting
with the live engine's tracks and gap rules, the view to lift in (calibrated or from the
subject), placement in the world."""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ...core.engine import LiftingEngine
from ...core.track_rules import DEFAULT as RULES, TrackRules
from ...core.windowing import LiftedPose
from ...geometry.calibration import CalibrationError
from .frames import CameraResult, CameraSource, Frame2D, OfflineError
from .progress import Progress


def run_pose(sources: Sequence[CameraSource], layout: str, progress: bool,
              make_tracking=None, repair_swaps: bool = RULES.repair_swaps,
              **estimator_args) -> List[CameraResult]:
    """2D for every camera, one MediaPipe video-mode graph and person tracking per camera."""
    from ...vision.pose_estimation import PoseEstimationError, create_estimator

    def make_estimator():
        try:
            return create_estimator(video_mode=True, **estimator_args)
        except (PoseEstimationError, OSError) as e:
            raise OfflineError(f'pose estimation: {e}') from None

    bar = Progress(progress)
    results = []
    try:
        for src in sources:
            t0 = time.perf_counter()

            def tick(n, label=src.name or '/', total=src.total, t0=t0):
                dt = time.perf_counter() - t0
                bar.update(label, n, total, n / dt if dt > 0 else 0.0)

            counts: dict = {}
            results.append(CameraResult(src.name, detect_2d(src, make_estimator, layout, tick,
                                                            make_tracking, repair_swaps, counts),
                                        swaps_2d=counts['swaps_repaired']))
            if not results[-1].frames:
                raise OfflineError(f'{src.label}: no frames')
    finally:
        bar.close()
    return results


def detect_2d(source: CameraSource, make_estimator: Callable[[], object], layout: str,
              on_frame: Callable[[int], None] = lambda n: None,
              make_tracking: Optional[Callable[[], object]] = None,
              repair_swaps: bool = RULES.repair_swaps,
              counts: Optional[dict] = None) -> List[Frame2D]:
    """MediaPipe on every frame through pose2d's own 2D stage
    (:class:`~vp3d_ros.vision.pose_stage.PoseStage`: mapping, person tracking, restarts,
    left/right swaps traded back; ``make_tracking`` builds a
    :class:`~vp3d_ros.core.tracking.PeopleTracking`, default all persons), keypoints rounded
    to the cloud's float32; ``counts``, if given, receives ``swaps_repaired``."""
    from ...vision.pose_stage import PoseStage
    from ...core.tracking import PeopleTracking
    out: List[Frame2D] = []
    stage = PoseStage(make_estimator, layout, (make_tracking or PeopleTracking)(),
                      repair_swaps=repair_swaps)
    try:
        for stamp, frame_id, rgb, info_size in source.frames():
            det = stage.process(rgb, stamp, info_size)
            kp = det.keypoints.astype(np.float32).astype(np.float64)
            conf = det.confidence.astype(np.float32).astype(np.float64)
            out.append(Frame2D(int(stamp), frame_id, info_size or det.size,
                               {i: (kp[k], conf[k]) for k, i in enumerate(det.ids)}))
            on_frame(len(out))
    finally:
        stage.close()
    if counts is not None:
        counts['swaps_repaired'] = stage.swaps.repaired if stage.swaps is not None else 0
    return out


def lift_frames(frames: Sequence[Frame2D], lifter, rules: TrackRules = RULES,
                chunk: int = 8192, make_view=None, counts: Optional[dict] = None
                ) -> Dict[int, Dict[int, LiftedPose]]:
    """Every person track of one camera -> {stamp: {person: pose}}: the live engine's
    tracks and gap rules, each segment lifted in one pass (:class:`SegmentLifter`);
    ``make_view``: (width, height) -> the view to lift through
    (``geometry.view.level_view_factory``); ``counts``, if given, receives
    ``swaps_repaired``."""
    from ...core.lifter import SegmentLifter
    engine = LiftingEngine([lambda w, h: SegmentLifter(lifter, w, h, chunk)], [''], rules,
                           views={'': make_view} if make_view else None)
    out: Dict[int, Dict[int, LiftedPose]] = {}

    def keep(ready):
        for r in ready:
            for pid, poses in r.poses.items():
                for lp in poses:
                    out.setdefault(lp.stamp_ns, {})[pid] = lp

    for fr in frames:  # stamps made increasing by the 2D stage: no stamp rules to apply
        engine.add('', fr.stamp_ns, fr.people, fr.size)
        keep(engine.lift_due())
    keep(engine.finish())
    if counts is not None:
        counts['swaps_repaired'] = engine.swaps_repaired
    return out


def calibrated(rig, name: str):
    """The calibrated camera of a camera name (the only one of a one-camera calibration)."""
    from ...geometry.calibration import find_camera
    try:
        return find_camera(rig, name) if (name or len(rig) != 1) else next(iter(rig.values()))
    except CalibrationError as e:
        if len(rig) != 1:
            raise OfflineError(f'camera {name!r}: {e}') from None
        return next(iter(rig.values()))


def _subject_poses(cam: CameraResult, layout: str, max_gap_s: float,
                   refit_limbs: bool = False):
    """Without a calibration: (a camera of guessed intrinsics, focal = the long image side;
    the longest-seen person's lifted skeletons placed through it, camera frame) or None
    when the frames have several sizes or nobody was lifted. ``refit_limbs``: their limbs
    refit to the 2D, as the world track will have them (gravity comes from the lifter's
    own limbs: what it was measured with)."""
    from ...geometry.calibration import guessed_camera
    sizes = {fr.size for fr in cam.frames}
    if len(sizes) != 1 or not cam.poses:
        return None
    camera = guessed_camera(*next(iter(sizes)), name=cam.name or 'camera')
    placed = place_in_world(cam, camera, layout, floor_z=None, max_gap_s=max_gap_s,
                            refit_limbs=refit_limbs)
    seen: Dict[int, int] = {}
    for by_id in placed.values():
        for pid in by_id:
            seen[pid] = seen.get(pid, 0) + 1
    pid = max(seen, key=seen.get, default=None)
    if pid is None:
        return None
    return camera, np.stack([placed[s][pid][0] for s in sorted(placed) if pid in placed[s]])


def _subject_view(cam: CameraResult, layout: str, max_gap_s: float):
    """Without a calibration: (width, height) -> the level view with gravity from the
    subject (``geometry.view.subject_level_view`` on :func:`_subject_poses`), or None when
    the skeletons cannot tell."""
    from ...geometry.view import subject_level_view
    got = _subject_poses(cam, layout, max_gap_s)
    view = subject_level_view(got[1], got[0], layout) if got is not None else None
    if view is None:
        return None
    size = got[0].size
    return lambda w, h: view if (int(w), int(h)) == tuple(size) else None


def subject_ground(cam: CameraResult, layout: str, max_gap_s: float = RULES.max_gap_s,
                   refit_limbs: bool = True):
    """Without a calibration: the floor and gravity from the subject
    (:func:`vp3d_ros.geometry.ground.estimate_ground` on :func:`_subject_poses`, as
    ``vp3d-lift --frame world`` does), or None when nobody was lifted. Its ``camera`` maps
    a world frame of this camera's own (REP-103: x along the optical axis on the floor,
    y left, z up, origin on the floor under the camera) into the camera. ``refit_limbs``:
    the floor goes under the feet of the world track with its limbs refit."""
    from ...geometry.ground import estimate_ground
    got = _subject_poses(cam, layout, max_gap_s)
    if got is None:
        return None
    camera, poses = got
    feet = _subject_poses(cam, layout, max_gap_s, True)[1] if refit_limbs else None
    try:
        return estimate_ground(poses, camera.name, camera.K, camera.size, feet_from=feet)
    except ValueError:
        return None


def lift_camera(cam: CameraResult, lifter, layout: str, rules: TrackRules = RULES,
                camera=None, level_view: bool = True) -> str:
    """Lift one camera's frames into ``cam.poses`` as vp3d-offline does, and say how its
    view was had: ``'calibration'`` (the calibrated ``camera``'s level view), ``'subject'``
    (no calibration: a plain lift, then again in the level view of the subject's up,
    :func:`_subject_view`) or ``'none'`` (the pixels as they are: ``level_view`` off, or no
    view to be had). Raises ``CalibrationError`` for an image size the calibration does
    not fit."""
    from ...geometry.view import level_view_factory
    view = level_view_factory(camera, layout) if camera is not None and level_view else None
    counts: dict = {}
    cam.poses = lift_frames(cam.frames, lifter, rules, make_view=view, counts=counts)
    how = 'calibration' if view is not None else 'none'
    if camera is None and level_view:   # up from the subject, then lifted again
        view = _subject_view(cam, layout, rules.max_gap_s)
        if view is not None:
            cam.poses = lift_frames(cam.frames, lifter, rules, make_view=view, counts=counts)
            how = 'subject'
    cam.swaps_lifted = counts['swaps_repaired']
    return how


def place_in_world(cam: CameraResult, camera, layout: str,
                   subject_height_m: Optional[float] = None, floor_z: Optional[float] = 0.0,
                   max_gap_s: float = RULES.max_gap_s, refit_limbs: bool = True
                   ) -> Dict[int, Dict[int, Tuple[np.ndarray, np.ndarray]]]:
    """Each person's lifted track of one camera in the calibration's world
    (:mod:`vp3d_ros.geometry.world`, offline: zero-phase smoothing, the floor cue), one
    segment per run of poses without a gap longer than ``max_gap_s``; ``refit_limbs``: the
    limbs refit to the 2D (:mod:`vp3d_ros.geometry.limbs`)."""
    from ...geometry import world as W
    kp_at = {fr.stamp_ns: fr for fr in cam.frames}
    sizes = {fr.size for fr in cam.frames}
    if len(sizes) == 1:
        camera = camera.with_image_size(*next(iter(sizes)))
    out: Dict[int, Dict[int, Tuple[np.ndarray, np.ndarray]]] = {}
    pids = sorted({pid for by_id in cam.poses.values() for pid in by_id})
    for pid in pids:
        stamps = sorted(s for s, by_id in cam.poses.items() if pid in by_id)
        cuts = [0] + [i for i in range(1, len(stamps))
                      if stamps[i] - stamps[i - 1] > max_gap_s * 1e9] + [len(stamps)]
        for a, b in zip(cuts[:-1], cuts[1:]):
            seg = stamps[a:b]
            rel = np.stack([cam.poses[s][pid].pose for s in seg]).astype(np.float64)
            conf3 = np.stack([cam.poses[s][pid].confidence for s in seg])
            kp = np.full((len(seg), 17, 2), np.nan)
            w = np.zeros((len(seg), 17))
            for i, s in enumerate(seg):
                fr = kp_at.get(s)
                if fr is None or pid not in fr.people:
                    continue
                k, c = fr.people[pid]
                if layout == 'coco':
                    k, c = W.coco_to_h36m_2d(k, c)
                kp[i], w[i] = k, c
            fps = 1e9 / np.median(np.diff(seg)) if len(seg) > 1 else 30.0
            pl = W.place_skeletons(rel, kp, camera, w, subject_height_m, fps,
                                   floor_z=floor_z, refit=refit_limbs)
            world = W.to_world(pl.poses_cam, camera)
            for i, s in enumerate(seg):
                if np.isfinite(world[i]).all():
                    out.setdefault(s, {})[pid] = (world[i], conf3[i])
    return out
