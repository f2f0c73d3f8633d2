"""Scale the model to the subject: segment factors from joint-centre distances, then
marker placement.

OpenSim's ScaleTool does both steps. The segment factors are measured here (numpy) and
handed to it as a manual scale set, so one rule covers both ways of sizing a subject:

- from markers (default): each segment's factor is the mean distance between its marker
  pairs over the standing window, over the same distance in the generic model;
- from a given height: every segment gets height / the generic model's stature.

Either way the pelvis width (Z) comes from RHip - LHip: Human3.6M's hip centres are about
27 cm apart against 17 cm between the model's hip joint centres, a difference of definition
that no overall size explains. Then the ScaleTool's marker placement runs IK on the standing
window and moves the markers that have no joint in the model (Spine, Thorax, Neck_Nose,
Head) onto the subject's; the joint-centre markers stay where the joints are.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from . import require_opensim
from . import model as kmodel
from .markers import Markers

# measurement -> (marker pairs, {body: axes})
MEASUREMENTS = {
    'thigh': ((('RHip', 'RKnee'), ('LHip', 'LKnee')),
              {b: 'XYZ' for b in ('femur_r', 'femur_l', 'patella_r', 'patella_l')}),
    'shank': ((('RKnee', 'RFoot'), ('LKnee', 'LFoot')),
              {b: 'XYZ' for b in ('tibia_r', 'talus_r', 'calcn_r', 'toes_r',
                                  'tibia_l', 'talus_l', 'calcn_l', 'toes_l')}),
    'trunk': ((('Hip', 'RShoulder'), ('Hip', 'LShoulder')),
              {'pelvis': 'XY', 'sacrum': 'XY', 'torso': 'XYZ', 'head': 'XYZ'}),
    'pelvis_width': ((('RHip', 'LHip'),), {'pelvis': 'Z', 'sacrum': 'Z'}),
    'upper_arm': ((('RShoulder', 'RElbow'), ('LShoulder', 'LElbow')),
                  {'humerus_r': 'XYZ', 'humerus_l': 'XYZ'}),
    'forearm': ((('RElbow', 'RWrist'), ('LElbow', 'LWrist')),
                {b: 'XYZ' for b in ('ulna_r', 'radius_r', 'hand_r',
                                    'ulna_l', 'radius_l', 'hand_l')}),
}


class ScaleResult(NamedTuple):
    model_path: Path
    setup_path: Path
    factors: Dict[str, float]                         # measurement -> factor
    body_scales: Dict[str, Tuple[float, float, float]]
    window: Tuple[float, float]                       # seconds used (standing)
    method: str                                       # 'markers' or 'height'


def _pair_distance(xyz: np.ndarray, names: Sequence[str], pairs) -> float:
    d = [np.linalg.norm(xyz[..., names.index(a), :] - xyz[..., names.index(b), :], axis=-1)
         for a, b in pairs]
    return float(np.nanmean(np.stack(d)))


def measure(markers: Markers, frames: Tuple[int, int], model_markers: Dict[str, np.ndarray],
            height: Optional[float] = None) -> Dict[str, float]:
    """Measurement name -> scale factor (subject / generic model)."""
    a, b = frames
    exp = markers.xyz[a:b]
    names = list(model_markers)
    gen = np.stack([model_markers[n] for n in names])
    out = {}
    for meas, (pairs, _) in MEASUREMENTS.items():
        if height is not None and meas != 'pelvis_width':
            out[meas] = height / kmodel.MODEL_STATURE_M
            continue
        out[meas] = _pair_distance(exp, markers.names, pairs) / _pair_distance(gen, names, pairs)
    return out


def body_scales(factors: Dict[str, float], bodies: Sequence[str]) -> Dict[str, Tuple[float, ...]]:
    scales = {}
    for meas, (_, targets) in MEASUREMENTS.items():
        for body, axes in targets.items():
            if body not in bodies:
                continue
            s = list(scales.get(body, (1.0, 1.0, 1.0)))
            for ax in axes:
                s['XYZ'.index(ax)] = factors[meas]
            scales[body] = tuple(s)
    return scales


def _ik_tasks(indent: str = '\t\t\t\t') -> str:
    rows = [f'{indent}<IKMarkerTask name="{n}"><apply>true</apply><weight>{w}</weight>'
            '</IKMarkerTask>'
            for n, w in kmodel.MARKER_WEIGHTS.items()]
    rows += [f'{indent}<IKCoordinateTask name="{n}"><apply>true</apply><weight>{w}</weight>'
             f'<value_type>manual_value</value_type><value>0</value></IKCoordinateTask>'
             for n, w in kmodel.PRIORS.items()]
    return '\n'.join(rows)


def setup_xml(name: str, generic: Path, trc: Path, window: Tuple[float, float],
              scales: Dict[str, Tuple[float, ...]], out_model: Path, mass: Optional[float]) -> str:
    scale_rows = '\n'.join(
        f'\t\t\t\t<Scale><scales>{sx:.6f} {sy:.6f} {sz:.6f}</scales><segment>{body}</segment>'
        f'<apply>true</apply></Scale>' for body, (sx, sy, sz) in scales.items())
    t0, t1 = window
    preserve = 'true' if mass is not None else 'false'
    return f'''<?xml version="1.0" encoding="UTF-8" ?>
<OpenSimDocument Version="40000">
	<ScaleTool name="{name}">
		<mass>{mass if mass is not None else -1}</mass>
		<height>-1</height>
		<age>-1</age>
		<notes>vp3d_ros.kinematics: segment factors measured from H36M-17 joint centres</notes>
		<GenericModelMaker>
			<model_file>{generic}</model_file>
			<marker_set_file>Unassigned</marker_set_file>
		</GenericModelMaker>
		<ModelScaler>
			<apply>true</apply>
			<scaling_order> manualScale</scaling_order>
			<MeasurementSet><objects /><groups /></MeasurementSet>
			<ScaleSet>
				<objects>
{scale_rows}
				</objects>
				<groups />
			</ScaleSet>
			<marker_file>{trc}</marker_file>
			<time_range> {t0:.6f} {t1:.6f}</time_range>
			<preserve_mass_distribution>{preserve}</preserve_mass_distribution>
			<output_model_file>Unassigned</output_model_file>
			<output_scale_file>Unassigned</output_scale_file>
		</ModelScaler>
		<MarkerPlacer>
			<apply>true</apply>
			<IKTaskSet>
				<objects>
{_ik_tasks()}
				</objects>
				<groups />
			</IKTaskSet>
			<marker_file>{trc}</marker_file>
			<coordinate_file>Unassigned</coordinate_file>
			<time_range> {t0:.6f} {t1:.6f}</time_range>
			<output_motion_file>Unassigned</output_motion_file>
			<output_model_file>{out_model}</output_model_file>
			<output_marker_file>Unassigned</output_marker_file>
			<max_marker_movement>-1</max_marker_movement>
		</MarkerPlacer>
	</ScaleTool>
</OpenSimDocument>
'''


def scale(markers: Markers, trc: Path, frames: Tuple[int, int], out_model: Path,
          setup_path: Path, model_file=None, height: Optional[float] = None,
          mass: Optional[float] = None, work_dir: Optional[Path] = None) -> ScaleResult:
    """Scale and place markers; writes the scaled model to ``out_model``."""
    osim = require_opensim()
    work_dir = Path(work_dir or out_model.parent)
    generic = kmodel.load(model_file)
    if missing := kmodel.missing_markers(generic, markers.names):
        raise ValueError(f'the model has no markers {missing} (its marker set must name the '
                         f'TRC markers {list(markers.names)})')
    kmodel.place_pelvis(generic, markers, frames[0])
    prepared = work_dir / f'{out_model.stem}_generic.osim'
    generic.printToXML(str(prepared))
    model_markers = kmodel.marker_positions(generic, markers.names)
    factors = measure(markers, frames, model_markers, height)
    bodies = [generic.getBodySet().get(i).getName() for i in range(generic.getBodySet().getSize())]
    scales = body_scales(factors, bodies)
    a, b = frames
    window = (float(markers.times[a]), float(markers.times[b - 1]))
    setup_path.write_text(setup_xml(out_model.stem, prepared.resolve(), Path(trc).resolve(), window,
                                    scales, out_model.resolve(), mass))
    tool = osim.ScaleTool(str(setup_path))
    tool.setPathToSubject('')
    if not tool.run():
        raise RuntimeError(f'OpenSim ScaleTool failed (setup {setup_path})')
    if not out_model.exists():
        raise RuntimeError(f'OpenSim ScaleTool wrote no model ({out_model})')
    return ScaleResult(out_model, setup_path, factors, scales, window,
                       'height' if height is not None else 'markers')
