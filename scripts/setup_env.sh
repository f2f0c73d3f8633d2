#!/usr/bin/env bash
# Idempotent: builds .venv with the pinned environment (requirements.txt) and installs
# vp3d_ros into it (editable). Re-running with unchanged pins is a no-op.
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
echo "[setup_env] building $venv (pinned by requirements.txt)" >&2
[ -x "$venv/bin/python" ] || "$py" -m venv "$venv"
"$venv/bin/python" -m pip install -q --disable-pip-version-check "pip<26"
# mediapipe depends on opencv-contrib-python; a second opencv wheel would overwrite cv2/.
"$venv/bin/python" -m pip uninstall -q -y opencv-python opencv-python-headless 2>/dev/null || true
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/requirements.txt" -c "$root/constraints.txt" \
  2> >(grep -v "WARNING: Location" >&2)
# opensim (vp3d-kinematics) asks for numpy>=2.1 but runs on mediapipe's numpy 1.26: no deps
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
  -r "$root/requirements-nodeps.txt" -c "$root/constraints.txt" 2> >(grep -v "WARNING: Location" >&2)
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$root"
echo "$want" > "$stamp"
