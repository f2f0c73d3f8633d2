"""Applications on the layers below: offline re-processing, the rig runner, the demos."""
