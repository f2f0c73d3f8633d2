"""Training the shipped lifter checkpoints from open motion capture (see docs/lifter_training.md).

Modules: :mod:`.data` (mocap files, fixed train/validation split), :mod:`.synth` (virtual
cameras, bone-length randomisation, projection, detector-like noise), :mod:`.metrics`
(MPJPE, P-MPJPE, smoothness) and :mod:`.train` (the training command).
"""
