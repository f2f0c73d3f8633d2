"""vp3d-offline's whole run, step by step: check the request, 2D on every camera, lift,
place in (or fuse into) the world, write the bag, say what was done."""
from __future__ import annotations

import dataclasses
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ...core.options import OFFLINE_LIFTER, LifterOptions, PoseOptions
from ...core.track_rules import DEFAULT as RULES, TrackRules
from ...geometry.calibration import CalibrationError
from ...io import bag_io
from .bag_out import check_out, write_bag
from .frames import CameraResult, OfflineError
from .fuse import fuse_in_world
from .sources import bag_sources, is_bag, video_source
from .stages import calibrated, lift_camera, place_in_world, run_pose, subject_ground

PRODUCER = 'vp3d-offline'


@dataclass
class OfflineSummary:
    frames: int
    persons: int
    frames_without_person: int
    seconds: float
    fps: float
    cameras: List[str]
    out: str
    checkpoint: str
    swaps_repaired: Dict[str, int] = field(default_factory=dict)  # camera -> limb-frames
    grounds: Dict[str, str] = field(default_factory=dict)  # camera -> estimated ground, said

    def line(self) -> str:
        swaps = ', '.join(f'{c or "camera"} {n}' for c, n in self.swaps_repaired.items() if n)
        return (f'{self.frames} frames ({len(self.cameras)} camera'
                f'{"s" if len(self.cameras) != 1 else ""}: {", ".join(self.cameras) or "/"}), '
                f'{self.persons} person{"s" if self.persons != 1 else ""} found, '
                f'{self.frames_without_person} frames without a person, '
                + (f'left/right labels traded back in {swaps} limb-frames (repair_swaps), '
                   if swaps else '')
                + ''.join(f'{c or "camera"}: {g}, ' for c, g in self.grounds.items())
                + f'{self.seconds:.1f} s, {self.fps:.1f} frames/s -> {self.out}')


def process(input_path, out_bag, *, lifter: LifterOptions = OFFLINE_LIFTER,
            rules: TrackRules = RULES, pose: PoseOptions = PoseOptions(), storage: str = 'mcap',
            topics: Optional[Sequence[str]] = None,
            camera_name: Optional[str] = None, frame_id: Optional[str] = None,
            max_frames: Optional[int] = None, progress: bool = False,
            calibration: Optional[str] = None, subject_height_m: Optional[float] = None,
            world_frame: str = 'world', floor_z: Optional[float] = 0.0,
            estimate_ground: bool = False, refit_limbs: bool = True) -> OfflineSummary:
    """Video file or camera bag -> LandmarkRecord bag at ``out_bag``; raises OfflineError.

    ``lifter``: which model and how (the lifter node's options; offline the shipped
    symmetric model by default); ``rules``: the gap rules of the live lifter.

    ``calibration``: also ``/<cam>/skeleton_3d/world`` (absolute, the calibration's world
    frame, ``frame_id`` = ``world_frame``), each camera matched by name (the only camera of
    a one-camera calibration otherwise); ``subject_height_m`` scales the skeletons,
    ``floor_z`` is the world's floor height (``None``: no floor cue); ``refit_limbs``: each
    camera's world skeletons get their limbs refit to its 2D (:mod:`vp3d_ros.geometry.limbs`).

    ``estimate_ground`` (no calibration): also ``/<cam>/skeleton_3d/world``, each camera in
    a ground frame of its own that the subject tells (:func:`~.stages.subject_ground`,
    ``frame_id`` ``<cam>_ground``), as ``vp3d-lift --frame world`` does: what
    ``vp3d-kinematics`` needs from one uncalibrated camera.

    ``pose``: MediaPipe and person tracking, as the pose2d node's parameters."""
    from ...core.lifter_config import model_provenance

    t0 = time.perf_counter()
    inputs = ([Path(p) for p in input_path] if isinstance(input_path, (list, tuple))
              else [Path(input_path)])
    out = Path(out_bag)
    _check_request(inputs, out, lifter, storage, max_frames, camera_name, calibration,
                   estimate_ground, subject_height_m)
    rig = _load_rig(calibration)
    try:
        pose.tracking()  # refuse a bad subject or gate before any work
    except ValueError as e:
        raise OfflineError(str(e)) from None
    ckpt, layout, seq = _build_lifter(lifter)
    sources, cameras = _read_2d(inputs, topics, camera_name, frame_id, max_frames, layout,
                                progress, pose, rules)

    models = [calibrated(rig, cam.name) for cam in cameras] if rig is not None else []
    level = {}   # camera -> how its level view was had
    for i, cam in enumerate(cameras):
        with _about(f'camera {cam.name!r}'):
            level[cam.name] = lift_camera(cam, seq, layout, rules,
                                          models[i] if models else None, lifter.level_view)
    fused = (_calibrated_world(cameras, models, layout, subject_height_m, floor_z,
                               rules.max_gap_s, refit_limbs) if rig is not None else None)
    grounds = (_estimated_grounds(cameras, layout, subject_height_m, rules.max_gap_s,
                                  refit_limbs) if estimate_ground else {})

    params = {
        'input': (str(inputs[0].resolve()) if len(inputs) == 1
                  else [str(p.resolve()) for p in inputs]),
        'mode': lifter.mode, 'filter_widths': list(ckpt.arch.filter_widths),
        'channels': ckpt.arch.channels, 'causal': ckpt.arch.causal, 'input_layout': layout,
        'flip': lifter.flip, **dataclasses.asdict(pose),
        'topics': [s.label for s in sources], 'max_frames': max_frames or 0,
        'max_gap_frames': rules.max_gap_frames, 'max_gap_s': rules.max_gap_s,
        'min_confidence': rules.min_confidence, 'repair_swaps': rules.repair_swaps,
        'lifting': 'whole sequence (SequenceLifter)',
        'calibration': str(Path(calibration).resolve()) if calibration else '',
        'level_view': level,
        'estimate_ground': grounds if estimate_ground else '',
        'subject_height_m': subject_height_m or 0.0, 'world_frame': world_frame,
        'floor_z': floor_z if floor_z is not None else 'none',
        'refit_limbs': bool(refit_limbs and (rig is not None or estimate_ground))}
    meta = bag_io.recording_metadata(layout, model_provenance(ckpt, layout, lifter.flip),
                                     params, {}, producer=PRODUCER)
    try:
        write_bag(out, storage, meta, cameras, seq.layout.num_joints, world_frame, fused)
    except bag_io.BagError as e:
        raise OfflineError(str(e)) from None

    frames = sum(len(c.frames) for c in cameras)
    seconds = time.perf_counter() - t0
    return OfflineSummary(
        frames=frames,
        persons=sum(len({p for f in c.frames for p in f.people}) for c in cameras),
        frames_without_person=sum(1 for c in cameras for f in c.frames if not f.people),
        seconds=seconds, fps=frames / seconds if seconds > 0 else 0.0,
        cameras=[c.name for c in cameras], out=str(out), checkpoint=ckpt.path,
        swaps_repaired={c.name: c.swaps_2d + c.swaps_lifted for c in cameras},
        grounds=grounds)


def _check_request(inputs: List[Path], out: Path, lifter: LifterOptions, storage: str,
                   max_frames, camera_name, calibration, estimate_ground,
                   subject_height_m) -> None:
    """Everything that can be refused before any work, each with what to do instead."""
    if not inputs:
        raise OfflineError('no input given')
    if lifter.trajectory:
        raise OfflineError('trajectory: offline skeletons are root-relative in the camera and '
                           'placed in the world with --calibration; the trajectory model is '
                           'for vp3d-lift and the lifter node')
    if storage not in bag_io.STORAGES:
        raise OfflineError(f"storage must be 'mcap' or 'sqlite3', not {storage!r}")
    if max_frames is not None and max_frames < 0:
        raise OfflineError(f'max_frames must be >= 0, got {max_frames}')
    for path in inputs:
        if not path.exists():
            raise OfflineError(f'{path}: no such file or directory')
        if not os.access(path, os.R_OK):
            raise OfflineError(f'{path}: not readable (permissions)')
    if len(inputs) > 1:
        if any(is_bag(p) for p in inputs):
            raise OfflineError('several inputs must all be video files, one per synchronised '
                               'camera (a multi-camera bag is given on its own)')
        if camera_name:
            raise OfflineError('--camera-name applies to a single input; several videos are '
                               'named from their files (balancing_cam01.mp4 -> cam01)')
    check_out(out)
    if estimate_ground and calibration:
        raise OfflineError('estimate_ground is for cameras without a calibration: with '
                           '--calibration the world is the calibration\'s')
    if subject_height_m is not None and not 0.5 <= subject_height_m <= 2.8:
        raise OfflineError('subject height is the standing height in metres (0.5 to 2.8), '
                           f'got {subject_height_m:g}')


def _load_rig(calibration: Optional[str]):
    if not calibration:
        return None
    from ...geometry.calibration import load_calibration
    try:
        return load_calibration(calibration)
    except CalibrationError as e:
        raise OfflineError(str(e)) from None


def _build_lifter(lifter: LifterOptions):
    """-> (checkpoint, input layout, SequenceLifter); a bad checkpoint is an OfflineError."""
    from ...core.checkpoint import CheckpointError
    from ...core.lifter import SequenceLifter
    try:
        ckpt, layout = lifter.resolve()
        seq = SequenceLifter(ckpt.build(lifter.device), input_layout=layout, flip=lifter.flip,
                             device=lifter.device)
    except (CheckpointError, ValueError) as e:
        raise OfflineError(f'lifter: {e}') from None
    return ckpt, layout, seq


def _read_2d(inputs: List[Path], topics, camera_name, frame_id, max_frames, layout: str,
             progress: bool, pose: PoseOptions, rules: TrackRules):
    """-> (the cameras' sources, their 2D frames): one video per camera, or a camera bag."""
    bag = None
    try:
        if len(inputs) > 1:
            sources = [video_source(p, None, frame_id, max_frames or None) for p in inputs]
            names = [s_.name for s_ in sources]
            if len(set(names)) != len(names):
                raise OfflineError(f'the videos give camera names {names}: each camera needs its '
                                   'own (name the files ..._cam01.mp4, ..._cam02.mp4, ...)')
        elif is_bag(inputs[0]):
            try:
                bag = bag_io.open_bag(inputs[0])
            except bag_io.BagError as e:
                raise OfflineError(str(e)) from None
            sources = bag_sources(bag, topics, camera_name, max_frames or None)
        else:
            if topics:
                raise OfflineError('--topics applies to bags, not to video files')
            sources = [video_source(inputs[0], camera_name, frame_id, max_frames or None)]
        cameras = run_pose(sources, layout, progress, pose.tracking, rules.repair_swaps,
                           **pose.estimator_args())
    except bag_io.BagError as e:
        raise OfflineError(f'{inputs[0]}: {e}') from None
    finally:
        if bag is not None:
            bag.close()
    return sources, cameras


def _calibrated_world(cameras: Sequence[CameraResult], models, layout: str,
                      subject_height_m, floor_z, max_gap_s: float, refit_limbs: bool):
    """Each camera's skeletons in the calibration's world; with several cameras, also one
    fused skeleton per person (returned)."""
    for cam, model in zip(cameras, models):
        with _about(f'camera {cam.name!r}'):
            cam.world = place_in_world(cam, model, layout, subject_height_m, floor_z,
                                       max_gap_s, refit_limbs)
    if len(cameras) < 2:
        return None
    with _about('fusion'):
        return fuse_in_world(cameras, models, layout, max_gap_s)


def _estimated_grounds(cameras: Sequence[CameraResult], layout: str, subject_height_m,
                       max_gap_s: float, refit_limbs: bool) -> Dict[str, str]:
    """No calibration: each camera's skeletons on the ground its subject tells; -> camera
    -> how the ground was had, said."""
    grounds = {}
    for cam in cameras:
        g = subject_ground(cam, layout, max_gap_s, refit_limbs)
        if g is None:
            grounds[cam.name] = 'no ground estimated (nobody lifted), no world track'
            continue
        cam.world = place_in_world(cam, g.camera, layout, subject_height_m, None, max_gap_s,
                                   refit_limbs)
        cam.world_frame = f'{cam.name or "camera"}_ground'
        grounds[cam.name] = f'ground from the subject: {g.said()}; frame {cam.world_frame}'
    return grounds


@contextmanager
def _about(what: str):
    """A CalibrationError inside becomes an OfflineError that names what it was about."""
    try:
        yield
    except CalibrationError as e:
        raise OfflineError(f'{what}: {e}') from None
