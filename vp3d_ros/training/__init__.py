"""Training the shipped lifter checkpoints from open motion capture (see docs/lifter_training.md).

Modules: :mod:`.data` (mocap files, fixed train/validation split), :mod:`.synth` (virtual
cameras, bone-length randomisation, projection, detector-like noise), :mod:`.metrics`
(MPJPE, P-MPJPE, smoothness), :mod:`.losses` (the loss terms beside MPJPE: bone lengths,
limb directions, joint angles), :mod:`.train` (the training command), :mod:`.feeder` (batches
from worker processes, for a GPU) and :mod:`.pack` (the mocap in one file that travels to a
lent GPU machine; scripts/train_on_device.sh).
"""
