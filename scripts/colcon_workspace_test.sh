#!/usr/bin/env bash
# The README's colcon path, in a throwaway workspace made from this checkout (CI's second
# step; also handy before a release):
#   colcon build --packages-select vp3d_ros && source install/setup.bash
#   colcon test --packages-select vp3d_ros && colcon test-result --verbose
# with the pinned .venv's colcon (scripts/setup_env.sh). Arguments are pytest's (a subset of
# test files or node ids, run from the package folder); none = the whole suite. Fails when
# the build fails, a test fails or errors, or no test ran at all.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VP3D_VENV:-$root/.venv}"
bash "$root/scripts/setup_env.sh"
ws="$(mktemp -d "${TMPDIR:-/tmp}/vp3d_colcon_ws.XXXXXX")"
trap 'rm -rf "$ws"' EXIT
mkdir -p "$ws/src/vp3d_ros"
# The checkout's files (tracked and new, not ignored ones such as .venv or build output).
(cd "$root" && git ls-files -co --exclude-standard -z | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"; done | xargs -0 cp --parents -t "$ws/src/vp3d_ros")
cd "$ws"
export PATH="$venv/bin:$PATH"
source "$root/scripts/ros_env.sh"
echo "[colcon] workspace $ws: colcon build --packages-select vp3d_ros"
colcon build --packages-select vp3d_ros
set +u
source install/setup.bash
set -u
echo "[colcon] the tests start the installed nodes, e.g. $(cd src/vp3d_ros/test && python -c \
  'from ros_harness import node_executable as f; print(f("lifter_node"))')"
echo "[colcon] colcon test --packages-select vp3d_ros ${*:+--pytest-args $*}"
# console_cohesion+: pytest's own output in the log, so a failure can be read there.
colcon test --packages-select vp3d_ros --event-handlers console_cohesion+ \
  --return-code-on-test-failure ${1:+--pytest-args "$@"}
rc=0
colcon test-result --verbose > "$ws/test_result.txt" || rc=$?
cat "$ws/test_result.txt"
[ "$rc" -eq 0 ] || exit "$rc"
summary="$(tail -n 1 "$ws/test_result.txt")"
tests="$(sed -n 's/^Summary: \([0-9]*\) tests\?[ ,].*/\1/p' <<<"$summary")"
if [ -z "$tests" ] || [ "$tests" -eq 0 ]; then
  echo "[colcon] no test result found (${summary:-nothing}): the test run did not finish" >&2
  exit 1
fi
echo "[colcon] $summary"
