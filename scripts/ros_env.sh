# Source me: the environment real DDS needs with the PyPI ROS 2 wheels (and harmless on a
# full ROS install). Every value can be overridden by setting it before sourcing.
_vp3d_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROS_LOG_DIR="${ROS_LOG_DIR:-${TMPDIR:-/tmp}/vp3d_ros_log}"
mkdir -p "$ROS_LOG_DIR"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# 16 MB shared-memory segment: the default 512 KB one drops most 640x480 frames.
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_vp3d_root/config/fastdds_shm_profile.xml}"
export PYTHONUNBUFFERED=1
unset _vp3d_root
