"""Shared fixtures: random VideoPose3D-layout checkpoints, the bundled clip, ROS isolation."""
import os
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

CLIP = os.path.join(REPO, 'vp3d_ros', 'data', 'balancing_cam01.mp4')

# What scripts/ros_env.sh exports (make test sources it), for a bare `pytest test/` too:
# the in-test client needs the 16 MB shared-memory profile before rclpy starts, or camera
# frames it publishes are silently dropped.
for _key, _value in (('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST'),
                     ('RMW_IMPLEMENTATION', 'rmw_fastrtps_cpp'),
                     ('FASTDDS_DEFAULT_PROFILES_FILE',
                      os.path.join(REPO, 'config', 'fastdds_shm_profile.xml')),
                     ('ROS_LOG_DIR', os.path.join(os.environ.get('TMPDIR', '/tmp'), 'vp3d_ros_log'))):
    os.environ.setdefault(_key, _value)


def pytest_configure(config):
    # Tiny test models: one thread avoids oversubscription on the 2-core CI machine, where
    # node processes and MediaPipe run beside the test process.
    try:
        import torch
        torch.set_num_threads(1)
    except ImportError:
        pass


@pytest.fixture(autouse=True)
def _ros_resources_closed():
    """Each test closes the DDS clients and stops the node processes it opened
    (ros_harness): one still spinning at interpreter exit aborts the whole run."""
    yield
    harness = sys.modules.get('ros_harness')
    if harness is not None:
        leaked = harness.close_all()
        assert not leaked, f'the test left open: {leaked}'


def randomize_model(model, seed=0):
    """Random weights *and* BatchNorm statistics, so every parameter matters."""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.dtype.is_floating_point:
                continue
            r = torch.randn(t.shape, generator=g, dtype=t.dtype)
            if name.endswith('running_var'):
                t.copy_(r.abs() * 0.5 + 0.5)
            elif name.endswith('weight') and t.ndim == 1:
                t.copy_(1.0 + 0.2 * r)
            else:
                t.copy_(r * (0.5 / max(1, t[0].numel()) ** 0.5) if t.ndim > 1 else 0.1 * r)
    return model.eval()


@pytest.fixture
def make_checkpoint(tmp_path):
    """make_checkpoint(filter_widths, channels, causal, official=True) -> (path, model)."""
    import torch
    from vp3d_ros.core.checkpoint import save_checkpoint
    from vp3d_ros.core.model import Architecture, build_model

    def make(filter_widths=(3, 3, 3), channels=32, causal=False, official=True, seed=0,
             name=None, legacy_format=False):
        model = randomize_model(build_model(Architecture(tuple(filter_widths), channels, causal)),
                                seed)
        path = tmp_path / (name or f'ckpt_{"-".join(map(str, filter_widths))}_{channels}'
                           f'{"_causal" if causal else ""}.bin')
        if official:
            payload = {
                'epoch': 80, 'lr': 0.00095,
                'random_state': np.random.RandomState(1234).get_state(),
                'optimizer': torch.optim.Adam(model.parameters(), lr=1e-3).state_dict(),
                'model_pos': model.state_dict(),
                'model_traj': model.state_dict(),
            }
        else:
            payload = model.state_dict()
        kwargs = {'_use_new_zipfile_serialization': False} if legacy_format else {}
        torch.save(payload, str(path), **kwargs)
        return str(path), model
    return make
