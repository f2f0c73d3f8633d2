"""The demo picture's 3D panels: orientation of front/side views, upright world poses, labels."""
import numpy as np

from vp3d_ros.vision.render import SPAN_M, panel_points, render_3d, strip
from vp3d_ros.core.skeletons import H36M17

HEAD, RFOOT, LFOOT, RWRIST = (H36M17.joints.index(j) for j in ('Head', 'RFoot', 'LFoot', 'RWrist'))


def standing_camera_pose():
    """A person facing the camera, 3 m away; right wrist reaching towards the camera and
    to the image's left (the person's right); camera optical frame, y down."""
    p = np.zeros((17, 3))
    p[:, 2] = 3.0
    p[HEAD] = [0.0, -0.7, 3.0]
    p[RFOOT] = [-0.15, 0.9, 3.0]
    p[LFOOT] = [0.15, 0.9, 3.0]
    p[RWRIST] = [-0.3, -0.2, 2.5]
    return p


def test_front_and_side_views():
    size = 400
    pose = standing_camera_pose()
    front, _ = panel_points(pose, size, 0.0)
    assert front[HEAD, 1] < front[0, 1] < front[RFOOT, 1]  # head up, feet down
    assert front[RFOOT, 0] < front[LFOOT, 0]  # the camera's view: person's right on the left
    assert np.allclose(front[0], size / 2)  # root at the centre
    np.testing.assert_allclose(front[RFOOT, 1] - front[0, 1], 0.9 * size / SPAN_M)  # metres
    side, view = panel_points(pose, size, 90.0)
    assert side[HEAD, 1] < side[RFOOT, 1]
    # from the camera's right: the camera is at the panel's left, so the wrist that reaches
    # towards the camera is left of the root; facing the camera, the person shows the viewer
    # their left side (nearer, drawn last)
    assert side[RWRIST, 0] < side[0, 0]
    assert view[LFOOT, 2] < view[RFOOT, 2]


def test_world_poses_are_upright():
    """A z-up world pose (the same person, standing on the floor) is drawn head up too."""
    cam = standing_camera_pose()
    world = np.stack([cam[:, 0], cam[:, 2], -cam[:, 1]], axis=1)  # x, y forward, z up
    for yaw in (0.0, 90.0):
        xy, _ = panel_points(world, 300, yaw, 'world')
        assert xy[HEAD, 1] < xy[0, 1] < xy[RFOOT, 1], yaw
    wrong, _ = panel_points(world, 300, 0.0, 'camera')  # z-up drawn as camera frame: sideways
    assert abs(wrong[HEAD, 1] - wrong[0, 1]) < 1e-9


def test_panels_and_strip_render():
    pose = standing_camera_pose()
    for frame in ('camera', 'world'):
        panel = render_3d(pose, 240, 90.0, 'title', frame)
        assert panel.shape == (240, 240, 3) and panel.dtype == np.uint8
        assert (panel > 100).any()  # skeleton and labels drawn
    assert render_3d(np.full((17, 3), np.nan), 100).shape == (100, 100, 3)
    frame = np.zeros((192, 108, 3), np.uint8)
    kp = np.full((17, 2), 50.0)
    img = strip([frame, frame], [kp, kp], [np.ones(17)] * 2, [pose, pose], height=200)
    w = round(108 * 200 / 192)  # frame width at height 200; the 3D panels are w x w
    assert img.shape == (200 + 2 * w, 2 * (w + 4), 3)
