"""Calibration files labs have, read into camera models (vp3d_ros.geometry.calibration)."""
import json

import cv2
import numpy as np
import pytest

from vp3d_ros.geometry.calibration import (CalibrationError, Camera, RigCameras, find_camera,
                                           load_calibration, rodrigues, rotation_vector,
                                           save_calibration_toml)

K = np.array([[1000.0, 0, 540], [0, 1000.0, 960], [0, 0, 1]])
DIST = np.array([-0.05, 0.01, 0.001, -0.002])
RVEC = np.array([1.6, 1.0, -0.4])
T = np.array([0.3, 0.9, 2.9])


def _camera(name='cam_01'):
    return Camera(name, K, DIST, rodrigues(RVEC), T, (1088, 1920))


def test_pose2sim_toml_round_trip_and_projection(tmp_path):
    path = save_calibration_toml({'cam_01': _camera(), 'cam_02': _camera('cam_02')},
                                 tmp_path / 'calib.toml')
    rig = load_calibration(path)
    cam = rig['cam_01']
    assert np.allclose(cam.R, rodrigues(RVEC)) and np.allclose(cam.t, T)
    assert np.allclose(rotation_vector(cam.R), RVEC)
    X = np.array([[0.1, -0.2, 1.0], [0.4, 0.3, 0.2]])
    # the world point projects as OpenCV projects it (Rodrigues world->camera, distortion)
    want, _ = cv2.projectPoints(X, RVEC, T, K, DIST)
    assert np.allclose(cam.project(X), want.reshape(-1, 2), atol=1e-6)
    # undistortion inverts the distortion: normalised coordinates are the camera-frame ray
    xc = cam.to_camera(X)
    assert np.allclose(cam.normalize_pixels(cam.project(X)), xc[:, :2] / xc[:, 2:], atol=1e-7)
    assert np.allclose(cam.to_world(xc), X) and np.allclose(cam.to_camera(cam.centre), 0)


def test_human36m_json_is_camera_to_world(tmp_path):
    R_cw = rodrigues(RVEC).T
    centre = np.array([1.8, 4.9, 1.5])
    path = tmp_path / 'h36m.json'
    path.write_text(json.dumps([{'subject': 'S8', 'name': 'camera1', 'R': R_cw.tolist(),
                                 'T_m': centre.tolist(), 'f': [1145.0, 1143.0],
                                 'c': [512.0, 515.0], 'k': [-0.2, 0.24, 0.0],
                                 'p': [0.0, 0.0], 'width': 1000, 'height': 1002}]))
    cam = load_calibration(path)['S8_camera1']
    assert np.allclose(cam.centre, centre) and np.allclose(cam.R, R_cw.T)
    assert cam.size == (1000, 1002)


def test_opencv_filestorage_yaml(tmp_path):
    path = str(tmp_path / 'cam07.yaml')
    fs = cv2.FileStorage(path, cv2.FILE_STORAGE_WRITE)
    fs.write('camera_matrix', K)
    fs.write('distortion_coefficients', DIST.reshape(1, -1))
    fs.write('rvec', RVEC.reshape(3, 1))
    fs.write('tvec', T.reshape(3, 1))
    fs.write('image_width', 1088)
    fs.write('image_height', 1920)
    fs.release()
    cam = load_calibration(path)['cam07']
    assert np.allclose(cam.K, K) and np.allclose(cam.R, rodrigues(RVEC)) and cam.size == (1088, 1920)


def test_names_sizes_and_refusals(tmp_path):
    rig = {'cam_01': _camera(), 'cam_02': _camera('cam_02')}
    assert find_camera(rig, 'cam01').name == 'cam_01' and find_camera(rig, '/cam_02').name == 'cam_02'
    assert find_camera(rig, 'cam2').name == 'cam_02'
    with pytest.raises(CalibrationError, match='no camera'):
        find_camera(rig, 'cam03')
    half = rig['cam_01'].with_image_size(544, 960)            # a downscaled stream
    assert np.allclose(half.K[:2], K[:2] / 2) and half.size == (544, 960)
    assert rig['cam_01'].with_image_size(1080, 1920).size == (1080, 1920)   # 8 px crop
    cams = RigCameras(rig, ['cam01', 'cam02'])
    assert cams.image_size('cam01', 1920, 1088) is not None and not cams.usable('cam01')
    assert cams.image_size('cam01', 544, 960) is None and cams.usable('cam01')
    assert cams['cam01'].size == (544, 960) and cams.describe() == 'cam01=cam_01, cam02=cam_02'
    bad = tmp_path / 'bad.toml'
    bad.write_text('[cam]\nmatrix = [[0, 0, 1], [0, 1, 1], [0, 0, 1]]\n')
    with pytest.raises(CalibrationError, match='focal'):
        load_calibration(bad)
    with pytest.raises(CalibrationError, match='does not exist'):
        load_calibration(tmp_path / 'missing.toml')
    (tmp_path / 'x.toml').write_text('not [ toml')
    with pytest.raises(CalibrationError, match='not valid TOML'):
        load_calibration(tmp_path / 'x.toml')
