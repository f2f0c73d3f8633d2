#!/usr/bin/env python3
"""Derive vp3d_ros/kinematics/vp3d_h36m17.osim from Pose2Sim's simple full-body model.

Usage: tools/make_kinematics_model.py MODEL_Pose2Sim_simple.osim [OUT.osim]

The source is `Pose2Sim/OpenSim_Setup/Model_Pose2Sim_simple.osim` of the pose2sim wheel
(BSD-3-Clause, itself adapted from Rajagopal et al. 2016; `pip download --no-deps pose2sim`).
What changes, and why:
- markers at the model's joint centres for the 17 Human3.6M joints (our TRC marker names):
  H36M joints are joint centres, not skin markers, so each marker sits where the model's
  joint is (hips in the pelvis, knee in the tibia, ankle in the tibia, shoulder, elbow and
  wrist at their joint centres). Pose2Sim's own Markers_Coco17.xml is not used: it puts RHip
  about 40 cm too low. Spine, Thorax, Neck_Nose and Head have no joint in the model: they
  get first guesses here and are placed on the subject by the ScaleTool's marker placement.
- no bone meshes (attached geometry): the opensim wheel ships no Geometry/ folder, and
  every load and scale would warn about each missing file. OpenSim's GUI shows the
  markers and frames; copy the meshes from an OpenSim install to see bones.
- arms hang down in the default pose (arm_add 0) like the static pose of a standing subject.
- the unobservable coordinates (ankle, subtalar, mtp, forearm, wrist) are locked at 0
  (pro_sup at its default), shoulder coordinates clamped, shoulder flexion allowed up to
  180 degrees (the source stops at 90): see vp3d_ros/kinematics/model.py.
"""
import sys
from pathlib import Path

import opensim as osim

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout
from vp3d_ros.kinematics import model as kmodel  # noqa: E402

HERE = Path(__file__).resolve().parent.parent
OUT = HERE / 'vp3d_ros' / 'kinematics' / 'vp3d_h36m17.osim'

# marker -> (body it rides on, joint whose child-frame origin is the joint centre)
JOINT_MARKERS = {
    'RHip': ('pelvis', 'hip_r'), 'LHip': ('pelvis', 'hip_l'),
    'RKnee': ('tibia_r', 'walker_knee_r'), 'LKnee': ('tibia_l', 'walker_knee_l'),
    'RFoot': ('tibia_r', 'ankle_r'), 'LFoot': ('tibia_l', 'ankle_l'),
    'RShoulder': ('humerus_r', 'acromial_r'), 'LShoulder': ('humerus_l', 'acromial_l'),
    'RElbow': ('ulna_r', 'elbow_r'), 'LElbow': ('ulna_l', 'elbow_l'),
    'RWrist': ('radius_r', 'radius_hand_r'), 'LWrist': ('radius_l', 'radius_hand_l'),
}
# first guesses (ground, default pose) for the markers that have no joint in the model,
# from Human3.6M proportions (heights above the hip centres, shoulder height to match)
FREE_MARKERS = {
    'Spine': ('torso', (-0.095, 1.160, 0.0)),
    'Thorax': ('torso', (-0.080, 1.470, 0.0)),
    'Neck_Nose': ('head', (0.020, 1.590, 0.0)),
    'Head': ('head', (-0.080, 1.700, 0.0)),
}
def derive(src: str, out: Path) -> Path:
    model = osim.Model(src)
    model.setName('vp3d_h36m17')
    for i in range(model.getBodySet().getSize()):  # no meshes: the opensim wheel has no
        model.getBodySet().get(i).updPropertyByName('attached_geometry').clear()  # Geometry/ there
    for name in ('arm_add_r', 'arm_add_l'):
        model.getCoordinateSet().get(name).setDefaultValue(0.0)
    kmodel.prepare(model)   # locks, clamps, ranges (vp3d_ros/kinematics/model.py)
    state = model.initSystem()
    model.realizePosition(state)
    ground = model.getGround()
    bodies = model.getBodySet()
    joints = model.getJointSet()

    def centre(joint: str):
        return joints.get(joint).getChildFrame().getPositionInGround(state)

    todo = []  # locations first: adding a marker invalidates the system

    def add(name: str, body: str, p_ground, fixed: bool):
        local = ground.findStationLocationInAnotherFrame(state, p_ground, bodies.get(body))
        todo.append((name, body, osim.Vec3(local), fixed))

    hip_mid = (centre('hip_r').to_numpy() + centre('hip_l').to_numpy()) / 2
    add('Hip', 'pelvis', osim.Vec3(*hip_mid), True)
    for name, (body, joint) in JOINT_MARKERS.items():
        add(name, body, centre(joint), True)
    for name, (body, p) in FREE_MARKERS.items():
        add(name, body, osim.Vec3(*p), False)
    for name, body, local, fixed in todo:
        marker = osim.Marker(name, bodies.get(body), local)
        marker.set_fixed(fixed)
        model.addMarker(marker)
    model.set_credits(
        'vp3d_ros H36M-17 joint-centre marker set on Pose2Sim_Simple (Pose2Sim, BSD-3-Clause, '
        'D. Pagnon): ' + model.get_credits())
    model.finalizeConnections()
    out.parent.mkdir(parents=True, exist_ok=True)
    model.printToXML(str(out))
    return out


if __name__ == '__main__':
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print(derive(sys.argv[1], Path(sys.argv[2]) if len(sys.argv) > 2 else OUT))
