"""Calibrated camera models, read from the calibration files labs already have.

One :class:`Camera` per camera: intrinsics ``K``, OpenCV distortion (k1 k2 p1 p2 [k3 ...]),
extrinsics world -> camera (``X_cam = R @ X_world + t``, metres) and the image size. The
camera frame is the optical frame (x right, y down, z forward), the frame the lifter's
skeletons are in; the world frame is the calibration's own (REP-103 z up for lab rigs
calibrated with a floor-level origin, as Qualisys / Pose2Sim / Anipose files are).

Readers (:func:`load_calibration`, by file content):
- Pose2Sim / Anipose TOML: ``[cam]`` sections with ``size``, ``matrix``, ``distortions``,
  ``rotation`` (Rodrigues, world -> camera), ``translation`` (metres); other sections
  (``metadata``) are skipped.
- JSON / YAML of the same keys per camera (``{name: {matrix, distortions, rotation,
  translation, size}}``, ``rotation`` either a Rodrigues vector or a 3x3 matrix), or the
  Human3.6M camera list (``R`` camera -> world, ``T_m`` camera centre: the opposite
  direction, converted here).
- OpenCV ``FileStorage`` YAML/XML of one camera (``camera_matrix`` / ``K``,
  ``distortion_coefficients`` / ``D``, ``rvec`` or ``R``, ``tvec`` or ``T``,
  ``image_width`` / ``image_height``); the camera takes the file's stem as its name.

Pure numpy (+ cv2 for the iterative undistortion only); no ROS.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional, Sequence, Tuple

import numpy as np


class CalibrationError(ValueError):
    """A calibration file or camera that cannot be used; the message says what is wrong."""


def rodrigues(rvec) -> np.ndarray:
    """Rotation vector (3,) -> rotation matrix (3, 3)."""
    r = np.asarray(rvec, dtype=np.float64).reshape(3)
    theta = float(np.linalg.norm(r))
    if theta < 1e-12:
        return np.eye(3)
    k = r / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * K + (1 - math.cos(theta)) * (K @ K)


def rotation_vector(R: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) -> rotation vector (3,) (inverse of :func:`rodrigues`)."""
    R = np.asarray(R, dtype=np.float64)
    c = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    theta = math.acos(c)
    if theta < 1e-12:
        return np.zeros(3)
    if math.pi - theta < 1e-6:  # 180 degrees: axis from the symmetric part
        w, v = np.linalg.eigh((R + np.eye(3)) / 2)
        axis = v[:, np.argmax(w)]
        return axis * theta
    axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * math.sin(theta))
    return axis * theta


@dataclass
class Camera:
    """One calibrated camera. ``R``, ``t``: world -> camera optical frame, metres."""
    name: str
    K: np.ndarray                      # (3, 3)
    dist: np.ndarray = field(default_factory=lambda: np.zeros(0))  # OpenCV order
    R: np.ndarray = field(default_factory=lambda: np.eye(3))
    t: np.ndarray = field(default_factory=lambda: np.zeros(3))
    size: Optional[Tuple[int, int]] = None   # (width, height) pixels
    fisheye: bool = False

    def __post_init__(self):
        self.K = np.asarray(self.K, dtype=np.float64).reshape(3, 3)
        self.dist = np.asarray(self.dist, dtype=np.float64).reshape(-1)
        self.R = np.asarray(self.R, dtype=np.float64).reshape(3, 3)
        self.t = np.asarray(self.t, dtype=np.float64).reshape(3)
        for what, arr in (('matrix', self.K), ('distortions', self.dist),
                          ('rotation', self.R), ('translation', self.t)):
            if not np.all(np.isfinite(arr)):
                raise CalibrationError(f'camera {self.name!r}: {what} is not finite')
        if self.K[0, 0] <= 0 or self.K[1, 1] <= 0:
            raise CalibrationError(f'camera {self.name!r}: focal lengths must be positive, '
                                   f'got fx={self.K[0, 0]:g}, fy={self.K[1, 1]:g}')
        if abs(np.linalg.det(self.R) - 1) > 1e-3 or not np.allclose(self.R @ self.R.T, np.eye(3),
                                                                     atol=1e-3):
            raise CalibrationError(f'camera {self.name!r}: rotation is not a proper rotation')
        if self.fisheye:
            raise CalibrationError(f'camera {self.name!r}: fisheye models are not supported; '
                                   'calibrate with the pinhole (OpenCV) model')
        if self.size is not None:
            self.size = (int(round(self.size[0])), int(round(self.size[1])))

    # ---------------------------------------------------------------- frames
    @property
    def centre(self) -> np.ndarray:
        """Camera centre in world coordinates (metres)."""
        return -self.R.T @ self.t

    def to_camera(self, x_world: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> camera optical frame (..., 3)."""
        return np.asarray(x_world, dtype=np.float64) @ self.R.T + self.t

    def to_world(self, x_cam: np.ndarray) -> np.ndarray:
        """Camera optical frame points (..., 3) -> world (..., 3)."""
        return (np.asarray(x_cam, dtype=np.float64) - self.t) @ self.R

    @property
    def projection(self) -> np.ndarray:
        """(3, 4) P = K [R | t] for undistorted pixels."""
        return self.K @ np.concatenate([self.R, self.t[:, None]], axis=1)

    # ---------------------------------------------------------------- pixels
    def distort(self, xn: np.ndarray) -> np.ndarray:
        """Normalised image coordinates (..., 2) -> distorted normalised coordinates."""
        d = np.zeros(8)
        d[:min(len(self.dist), 8)] = self.dist[:8]
        k1, k2, p1, p2, k3, k4, k5, k6 = d
        x, y = xn[..., 0], xn[..., 1]
        r2 = x * x + y * y
        radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
        xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
        yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
        return np.stack([xd, yd], -1)

    def project_camera(self, x_cam: np.ndarray) -> np.ndarray:
        """Camera-frame points (..., 3) -> pixels (..., 2), with distortion. Points behind
        the camera give NaN."""
        x_cam = np.asarray(x_cam, dtype=np.float64)
        z = x_cam[..., 2]
        with np.errstate(divide='ignore', invalid='ignore'):
            xn = x_cam[..., :2] / z[..., None]
        xn = np.where((z > 1e-9)[..., None], xn, np.nan)
        xd = self.distort(xn) if self.dist.any() else xn
        return xd @ self.K[:2, :2].T + self.K[:2, 2]

    def project(self, x_world: np.ndarray) -> np.ndarray:
        """World points (..., 3) -> pixels (..., 2), with distortion."""
        return self.project_camera(self.to_camera(x_world))

    def normalize_pixels(self, px: np.ndarray) -> np.ndarray:
        """Pixels (..., 2) -> undistorted normalised image coordinates (..., 2) (the ray
        ``(x, y, 1)`` in the camera frame). NaN stays NaN."""
        px = np.asarray(px, dtype=np.float64)
        shape = px.shape
        flat = px.reshape(-1, 2)
        out = np.full_like(flat, np.nan)
        ok = np.all(np.isfinite(flat), axis=1)
        if ok.any():
            if self.dist.any():
                import cv2
                und = cv2.undistortPointsIter(
                    flat[ok].reshape(-1, 1, 2), self.K, self.dist, None, None,
                    (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 30, 1e-10))
                out[ok] = und.reshape(-1, 2)
            else:
                out[ok] = (flat[ok] - self.K[:2, 2]) / np.diag(self.K)[:2]
        return out.reshape(shape)

    def undistort_pixels(self, px: np.ndarray) -> np.ndarray:
        """Pixels (..., 2) -> the pixels an ideal pinhole camera with the same K would see."""
        return self.normalize_pixels(px) @ self.K[:2, :2].T + self.K[:2, 2]

    def with_image_size(self, width: int, height: int) -> 'Camera':
        """The same camera for images of another size: K scaled when the aspect ratio
        matches (a downscaled stream), else refused."""
        if self.size is None or (int(width), int(height)) == self.size:
            return Camera(self.name, self.K, self.dist, self.R, self.t, (width, height))
        sx, sy = width / self.size[0], height / self.size[1]
        if abs(sx - sy) > 0.01 * max(sx, sy):
            # cam01/cam02 of the Pose2Sim clip decode 1080 wide against a calibrated 1088:
            # a crop of a few pixels, not a rescale. Accept within 1% of each side.
            if abs(sx - 1) <= 0.01 and abs(sy - 1) <= 0.01:
                return Camera(self.name, self.K, self.dist, self.R, self.t, (width, height))
            raise CalibrationError(
                f'camera {self.name!r} is calibrated for {self.size[0]}x{self.size[1]} images, '
                f'got {width}x{height} (another aspect ratio: a different camera mode?)')
        K = self.K.copy()
        K[0] *= sx
        K[1] *= sy
        return Camera(self.name, K, self.dist, self.R, self.t, (width, height))


Rig = Dict[str, Camera]


def guessed_camera(width: float, height: float, focal: Optional[float] = None,
                   name: str = 'camera') -> Camera:
    """Intrinsics only, for a camera without calibration: focal ``focal`` pixels (default the
    long image side, a normal lens), principal point at the image centre, no distortion;
    world = the camera's own frame."""
    f = float(focal or max(width, height))
    return Camera(name, [[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]],
                  size=(width, height))


def _canon(name: str) -> str:
    return re.sub(r'[^a-z0-9]', '', name.lower())


def find_camera(rig: Mapping[str, Camera], name: str) -> Camera:
    """The camera called ``name``, matched as written, then ignoring case and punctuation
    (``cam01`` = ``cam_01`` = ``/cam01``), then by its number (``cam1`` = ``cam_01``)."""
    if name in rig:
        return rig[name]
    want = _canon(name)
    hits = [c for k, c in rig.items() if _canon(k) == want]
    if not hits:
        num = re.findall(r'\d+', name)
        if num:
            hits = [c for k, c in rig.items()
                    if re.findall(r'\d+', k) and int(re.findall(r'\d+', k)[-1]) == int(num[-1])
                    and re.sub(r'\d+', '', _canon(k)) == re.sub(r'\d+', '', want)]
    if len(hits) == 1:
        return hits[0]
    have = ', '.join(sorted(rig)) or 'none'
    if not hits:
        raise CalibrationError(f'no camera {name!r} in the calibration (it has: {have})')
    raise CalibrationError(f'camera name {name!r} is ambiguous in the calibration ({have})')


class RigCameras:
    """A rig's calibrated cameras by namespace (``cam01`` -> the file's ``cam_01``), each
    scaled to the image size its pose2d reports (a downscaled stream), or refused while
    that size does not fit the calibration (another aspect ratio)."""

    def __init__(self, rig: Mapping[str, Camera], names: Sequence[str]):
        self.base = {n: find_camera(rig, n) for n in names}
        self.current = dict(self.base)
        self.refused = set()

    @classmethod
    def from_file(cls, path, names: Sequence[str]) -> 'RigCameras':
        return cls(load_calibration(path), names)

    def __getitem__(self, name: str) -> Camera:
        return self.current[name]

    def usable(self, name: str) -> bool:
        return name not in self.refused

    def image_size(self, name: str, width: int, height: int) -> Optional[str]:
        """The size of ``name``'s images: None when its camera now fits them, else why not
        (the camera is refused until a size that fits arrives)."""
        try:
            self.current[name] = self.base[name].with_image_size(int(width), int(height))
        except CalibrationError as e:
            self.refused.add(name)
            return str(e)
        self.refused.discard(name)
        return None

    def describe(self) -> str:
        return ', '.join(f'{n}={c.name}' for n, c in self.base.items())


# ----------------------------------------------------------------------------- readers

def _rotation(value, where: str) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.size == 3:
        return rodrigues(a)
    if a.size == 9:
        return a.reshape(3, 3)
    raise CalibrationError(f'{where}: rotation must be a Rodrigues vector (3) or a 3x3 '
                           f'matrix, got {a.size} numbers')


def _first(d: Mapping, keys: Sequence[str], where: str, required: bool = True):
    for k in keys:
        if k in d and d[k] is not None:
            return d[k]
    if required:
        raise CalibrationError(f'{where}: missing {" / ".join(keys)}')
    return None


def camera_from_dict(name: str, d: Mapping, where: str = '') -> Camera:
    """One camera from Pose2Sim/Anipose keys (or their common synonyms)."""
    where = where or f'camera {name!r}'
    if 'R' in d and 'T_m' in d:  # Human3.6M camera JSON: camera -> world and centre
        R_cw = np.asarray(d['R'], dtype=np.float64).reshape(3, 3)
        C = np.asarray(d['T_m'], dtype=np.float64).reshape(3)
        K = np.array([[d['f'][0], 0, d['c'][0]], [0, d['f'][1], d['c'][1]], [0, 0, 1.0]])
        k = list(d.get('k', [0, 0, 0])) + [0] * 3
        p = list(d.get('p', [0, 0])) + [0] * 2
        R = R_cw.T
        return Camera(name, K, [k[0], k[1], p[0], p[1], k[2]], R, -R @ C,
                      (d.get('width'), d.get('height')) if 'width' in d else None)
    try:
        K = np.asarray(_first(d, ('matrix', 'K', 'camera_matrix', 'intrinsics'), where),
                       dtype=np.float64)
        if K.size != 9:
            raise CalibrationError(f'{where}: matrix must be 3x3, got {K.size} numbers')
        dist = _first(d, ('distortions', 'dist', 'D', 'distortion_coefficients', 'dist_coeffs'),
                      where, required=False)
        rot = _first(d, ('rotation', 'rvec', 'R'), where, required=False)
        trans = _first(d, ('translation', 'tvec', 'T', 't'), where, required=False)
        size = _first(d, ('size', 'image_size', 'resolution'), where, required=False)
        if size is None and 'image_width' in d and 'image_height' in d:
            size = (d['image_width'], d['image_height'])
        return Camera(name, K, dist if dist is not None else np.zeros(0),
                      _rotation(rot, where) if rot is not None else np.eye(3),
                      trans if trans is not None else np.zeros(3),
                      tuple(size) if size is not None else None,
                      bool(d.get('fisheye', False)))
    except CalibrationError:
        raise
    except (TypeError, ValueError) as e:
        raise CalibrationError(f'{where}: {e}') from None


def _from_mapping(data, path: str) -> Rig:
    if isinstance(data, list):  # Human3.6M list of cameras
        rig = {}
        for i, d in enumerate(data):
            if not isinstance(d, Mapping):
                raise CalibrationError(f'{path}: entry {i} is not a camera')
            name = str(d.get('name') or d.get('camera_id') or f'camera{i + 1}')
            if 'subject' in d:
                name = f'{d["subject"]}_{name}'
            rig[name] = camera_from_dict(name, d, f'{path}: camera {name!r}')
        return rig
    if not isinstance(data, Mapping):
        raise CalibrationError(f'{path}: expected a table of cameras')
    if 'cameras' in data and isinstance(data['cameras'], (Mapping, list)):
        return _from_mapping(data['cameras'], path)
    rig = {}
    for key, d in data.items():
        if not isinstance(d, Mapping) or key == 'metadata':
            continue
        if not any(k in d for k in ('matrix', 'K', 'camera_matrix', 'intrinsics', 'f')):
            continue
        name = str(d.get('name') or key)
        rig[name] = camera_from_dict(name, d, f'{path}: [{key}]')
    if not rig and any(k in data for k in ('matrix', 'K', 'camera_matrix')):
        name = Path(path).stem
        rig[name] = camera_from_dict(name, data, path)
    return rig


def _opencv_storage(path: str) -> Rig:
    import cv2
    fs = cv2.FileStorage(path, cv2.FILE_STORAGE_READ)
    if not fs.isOpened():
        raise CalibrationError(f'{path}: not a readable OpenCV FileStorage file')
    try:
        d = {}
        for key in ('camera_matrix', 'K', 'distortion_coefficients', 'D', 'dist_coeffs',
                    'rvec', 'R', 'tvec', 'T', 'image_width', 'image_height'):
            node = fs.getNode(key)
            if node.empty():
                continue
            d[key] = node.real() if (node.isInt() or node.isReal()) else node.mat()
    finally:
        fs.release()
    name = Path(path).stem
    return {name: camera_from_dict(name, d, path)}


def load_calibration(path) -> Rig:
    """Cameras of a calibration file, by name (see the module docstring for formats)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CalibrationError(f'calibration file {path!r} does not exist')
    with open(path, 'rb') as f:
        raw = f.read()
    text = raw.decode('utf-8', errors='replace')
    ext = Path(path).suffix.lower()
    rig: Rig = {}
    if ext == '.toml':
        import tomllib
        try:
            rig = _from_mapping(tomllib.loads(text), path)
        except tomllib.TOMLDecodeError as e:
            raise CalibrationError(f'{path}: not valid TOML: {e}') from None
    elif ext == '.json':
        try:
            rig = _from_mapping(json.loads(text), path)
        except json.JSONDecodeError as e:
            raise CalibrationError(f'{path}: not valid JSON: {e}') from None
    elif ext in ('.yaml', '.yml', '.xml'):
        if text.lstrip().startswith('%YAML') or ext == '.xml' or '!!opencv-matrix' in text:
            rig = _opencv_storage(path)
        else:
            import yaml
            try:
                rig = _from_mapping(yaml.safe_load(text), path)
            except yaml.YAMLError as e:
                raise CalibrationError(f'{path}: not valid YAML: {e}') from None
    else:
        raise CalibrationError(f'{path}: unknown calibration format {ext!r} (use .toml '
                               '(Pose2Sim/Anipose), .json, .yaml or OpenCV .yaml/.xml)')
    if not rig:
        raise CalibrationError(f'{path}: no camera found (expected sections with matrix, '
                               'distortions, rotation, translation)')
    return rig


def save_calibration_toml(rig: Mapping[str, Camera], path) -> Path:
    """Write cameras in the Pose2Sim/Anipose TOML form (what :func:`load_calibration` reads)."""
    def arr(a):
        return '[ ' + ', '.join(repr(float(x)) for x in np.asarray(a).reshape(-1)) + ']'
    lines = []
    for key, cam in rig.items():
        lines.append(f'[{key}]')
        lines.append(f'name = "{cam.name}"')
        if cam.size is not None:
            lines.append(f'size = [ {float(cam.size[0])}, {float(cam.size[1])}]')
        lines.append('matrix = [ ' + ', '.join(arr(r) for r in cam.K) + ']')
        lines.append(f'distortions = {arr(cam.dist if cam.dist.size else np.zeros(4))}')
        lines.append(f'rotation = {arr(rotation_vector(cam.R))}')
        lines.append(f'translation = {arr(cam.t)}')
        lines.append('fisheye = false')
        lines.append('')
    path = Path(path)
    path.write_text('\n'.join(lines))
    return path


def rig_names(rig: Mapping[str, Camera]) -> Iterable[str]:
    return sorted(rig)
