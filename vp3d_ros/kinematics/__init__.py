"""Joint angles from H36M-17 skeletons with OpenSim: scale a full-body model, then IK.

``opensim`` is an optional dependency (the PyPI wheel, 4.6): nothing here imports it at
package import; :func:`require_opensim` does, and says how to install it when it is missing.
Pure modules (no opensim, no rclpy): :mod:`.markers`. OpenSim modules: :mod:`.model`,
:mod:`.scaling`, :mod:`.ik`, :mod:`.pipeline` (offline), :mod:`.live` (one frame at a time, the
kinematics node's engine); outputs: :mod:`.report`.
"""
from pathlib import Path

INSTALL_HINT = ('OpenSim is not installed: `pip install --no-deps opensim==4.6` (the PyPI wheel '
                'for Python 3.11; --no-deps because it asks for numpy>=2 but runs with the '
                "numpy<2 mediapipe needs), or `bash scripts/setup_env.sh`, which installs it.")
MODEL_FILE = Path(__file__).resolve().parent / 'vp3d_h36m17.osim'


def require_opensim():
    """The opensim module, quiet (warnings only, no opensim.log in the working directory).

    Importing the wheel sets ``LD_LIBRARY_PATH`` to ``PATH`` (and prepends its folder to
    ``PATH``) in ``os.environ``: every process started afterwards, a ROS node among them,
    lost the ROS wheels' libraries (``librcl_action.so: cannot open shared object file``).
    Both are put back; the libraries it loaded stay loaded.
    """
    import os
    saved = {k: os.environ.get(k) for k in ('PATH', 'LD_LIBRARY_PATH', 'DYLD_LIBRARY_PATH')}
    try:
        import opensim
    except ImportError as e:
        raise ImportError(f'{INSTALL_HINT} ({e})') from e
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    if not getattr(opensim, '_vp3d_quiet', False):
        opensim.Logger.removeFileSink()
        opensim.Logger.setLevelString('warn')
        opensim._vp3d_quiet = True
    return opensim
