#!/usr/bin/env bash
# Idempotent: builds .venv with the pinned environment (requirements.txt) and installs
# vp3d_ros into it (editable), printing each step and pip's downloads. Re-running with
# unchanged pins is a silent no-op. VP3D_TORCH_INDEX_URL=<index> installs the pinned torch
# from that index first (e.g. the CPU-only wheels for a rig without a GPU).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VP3D_VENV:-$root/.venv}"
py="${PYTHON:-python3.11}"
command -v "$py" >/dev/null 2>&1 || py=python3
stamp="$venv/.vp3d_env_stamp"
want="$(cat "$root/requirements.txt" "$root/requirements-nodeps.txt" "$root/constraints.txt" "$root/setup.py" | sha256sum | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c "import vp3d_ros" 2>/dev/null; then
  exit 0
fi
say() { echo "[setup_env] $*" >&2; }
t0=$SECONDS
say "building $venv (pinned by requirements.txt); nothing to do on later runs with unchanged pins"
fresh=0
if [ ! -x "$venv/bin/python" ]; then
  fresh=1
  say "1/4 creating the virtual environment with $("$py" --version 2>&1)"
  "$py" -m venv "$venv"
else
  say "1/4 virtual environment exists; updating it"
fi
say "2/4 pip"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "pip<26"
# mediapipe depends on opencv-contrib-python; a second opencv wheel would overwrite cv2/.
"$venv/bin/python" -m pip uninstall -q -y opencv-python opencv-python-headless 2>/dev/null || true
say "3/4 pinned packages (torch, mediapipe, ROS 2 wheels, ...): pip lists each download"
torch_pin="$(grep -E '^torch==' "$root/constraints.txt" | head -1)"
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  if [ -n "${VP3D_TORCH_INDEX_URL:-}" ]; then
    say "    $torch_pin from $VP3D_TORCH_INDEX_URL (VP3D_TORCH_INDEX_URL)"
    "$venv/bin/python" -m pip install --disable-pip-version-check "$torch_pin" \
      --index-url "$VP3D_TORCH_INDEX_URL"
  else
    say "    note: on Linux the PyPI torch wheel is the CUDA build (several GB of GPU libraries)."
    say "    For a CPU-only rig stop here (Ctrl-C) and run again with"
    say "    VP3D_TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (README: torch without a GPU)"
  fi
fi
pins=(-r "$root/requirements.txt" -c "$root/constraints.txt")
if [ "$fresh" = 1 ]; then  # pip's own progress bars on a terminal
  "$venv/bin/python" -m pip install --disable-pip-version-check "${pins[@]}" \
    2> >(grep -v "WARNING: Location" >&2)
else  # an update: only what changes, not a line per package already there
  "$venv/bin/python" -m pip install --disable-pip-version-check "${pins[@]}" \
    2> >(grep -v "WARNING: Location" >&2) | { grep --line-buffered -v "^Requirement already satisfied" || true; }
fi
# opensim (vp3d-kinematics) asks for numpy>=2.1 but runs on mediapipe's numpy 1.26: no deps
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
  -r "$root/requirements-nodeps.txt" -c "$root/constraints.txt" 2> >(grep -v "WARNING: Location" >&2)
say "4/4 vp3d_ros itself (editable)"
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$root"
echo "$want" > "$stamp"
say "done in $((SECONDS - t0)) s"
