#!/bin/bash
# Train both shipped lifters on a lent GPU machine (the `device` tool) and land the weights.
#
#   here:   bash scripts/train_on_device.sh pack [MOCAP_DIR]   -> .device_data/ (git-ignored)
#   device: run(command="bash scripts/train_on_device.sh run 7", carry=[".device_data"],
#               timeout_s=600)                                  -> $OUT/{causal,symmetric}.*
#   here:   bash scripts/train_on_device.sh land DIR            (DIR: the files that came back)
#
# `run MINUTES`: both models at once on the one GPU, each resumed from the shipped weights,
# batches synthesised by worker processes (training/feeder.py) since numpy, not the GPU,
# sets the pace; a snapshot every 2 minutes, so a call cut short still brings weights back.
# Environment: BATCH (windows per batch, default 192), LR (default 2e-4), WORKERS (per
# model, default 7), SEED (default 100). The device's python3 has torch and numpy; the
# package's training code needs nothing else. See docs/lifter_training.md.
set -euo pipefail
cd "$(dirname "$0")/.."
verb=${1:?usage: train_on_device.sh pack [MOCAP_DIR] | run MINUTES | land DIR}
KINDS=(causal symmetric)
case "$verb" in
  pack)
    py=${PYTHON:-.venv/bin/python}
    mkdir -p .device_data
    "$py" -m vp3d_ros.training.pack pack "${2:-../shared/data/mocap/h36m17}" .device_data/mocap.npz
    git rev-parse --short HEAD > .device_data/commit
    ;;
  run)
    minutes=${2:?run MINUTES}
    : "${OUT:?run is meant for the device machine, where \$OUT collects the results}"
    py=${PYTHON:-python3}
    "$py" -m vp3d_ros.training.pack unpack .device_data/mocap.npz /tmp/mocap
    export VP3D_GIT_COMMIT=$(cat .device_data/commit 2>/dev/null || true)
    nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
    pids=()
    for i in "${!KINDS[@]}"; do kind=${KINDS[$i]}
      PYTHONUNBUFFERED=1 "$py" -m vp3d_ros.training.train --kind "$kind" \
        --resume "vp3d_ros/models/vp3d_ros_${kind}_h36m.bin" --out "$OUT/$kind.bin" \
        --device cuda --workers "${WORKERS:-7}" --batch "${BATCH:-192}" --lr "${LR:-2e-4}" \
        --minutes "$minutes" --save-every 2 --seed $(( ${SEED:-100} + i )) \
        --data /tmp/mocap > "$OUT/$kind.log" 2>&1 &
      pids+=($!)
    done
    rc=0; for p in "${pids[@]}"; do wait "$p" || rc=$?; done
    for kind in "${KINDS[@]}"; do tail -n 3 "$OUT/$kind.log"; done
    exit $rc
    ;;
  land)
    dir=$(cd "${2:?land DIR}" && pwd)
    for kind in "${KINDS[@]}"; do
      dst=vp3d_ros/models/vp3d_ros_${kind}_h36m.bin
      # the sidecar names the device's output path: name the shipped one instead
      "${PYTHON:-.venv/bin/python}" -c "import sys; from vp3d_ros.training import train
train.relocate(*sys.argv[1:])" "$dir/$kind.bin" "$dst"
      echo "landed $dst ($(grep -m1 'h36m_mpjpe' "${dst%.bin}.yaml" | tr -s ' '))"
    done
    ;;
  *) echo "unknown verb $verb" >&2; exit 2 ;;
esac
