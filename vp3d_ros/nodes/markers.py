"""RViz display of skeletons: joints as a sphere list, bones as a line list (never NaN)."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker, MarkerArray

from ..core.skeletons import H36M17

_LEFT = set(H36M17.left)
_RIGHT = set(H36M17.right)


def _colour(j):
    if j in _LEFT:
        return ColorRGBA(r=0.2, g=0.5, b=1.0, a=1.0)
    if j in _RIGHT:
        return ColorRGBA(r=1.0, g=0.3, b=0.2, a=1.0)
    return ColorRGBA(r=0.9, g=0.9, b=0.9, a=1.0)


def skeleton_markers(header, poses: np.ndarray, person_ids, lifetime_s: float = 0.5) -> MarkerArray:
    """(P, 17, 3) metres -> MarkerArray (ids 2*person, 2*person+1). Non-finite joints and
    the bones touching them are left out."""
    out = MarkerArray()
    for pose, pid in zip(poses, person_ids):
        ok = np.all(np.isfinite(pose), axis=1)
        joints = Marker(header=header, ns='vp3d_joints', id=2 * int(pid), type=Marker.SPHERE_LIST,
                        action=Marker.ADD)
        bones = Marker(header=header, ns='vp3d_bones', id=2 * int(pid) + 1, type=Marker.LINE_LIST,
                       action=Marker.ADD)
        for m in (joints, bones):
            m.pose.orientation.w = 1.0
            m.lifetime = Duration(sec=int(lifetime_s), nanosec=int((lifetime_s % 1) * 1e9))
        joints.scale.x = joints.scale.y = joints.scale.z = 0.04
        bones.scale.x = 0.015
        joints.color = bones.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        for j in np.nonzero(ok)[0]:
            joints.points.append(Point(x=float(pose[j, 0]), y=float(pose[j, 1]), z=float(pose[j, 2])))
            joints.colors.append(_colour(int(j)))
        for a, b in H36M17.bones:
            if ok[a] and ok[b]:
                for j in (a, b):
                    bones.points.append(Point(x=float(pose[j, 0]), y=float(pose[j, 1]),
                                              z=float(pose[j, 2])))
                    bones.colors.append(_colour(b))
        out.markers += [joints, bones]
    return out
