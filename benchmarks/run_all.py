"""Every benchmark in one command (`make bench`): each prints its ratio against a baseline
measured in the same run. Pass --quick for shorter runs."""
from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
QUICK = '--quick' in sys.argv

BENCHMARKS = [
    # One torch thread, as the lifter node runs by default (torch_threads: 1).
    ('lifter: streaming vs window recompute (243 frames, 1024 ch, 1 thread)', 'lifter.py',
     ['--threads', '1'] + (['--frames', '60', '--rounds', '1'] if QUICK else [])),
    ('pose2d: node vs bare MediaPipe; end-to-end latency', 'pose2d.py',
     ['--frames', '30'] if QUICK else []),
    ('offline: frames/s vs bare MediaPipe', 'offline.py', ['--frames', '40'] if QUICK else []),
    ('recorder: sustained messages/s with zero loss', 'recorder.py',
     ['--rates', '500,1000', '--seconds', '2'] if QUICK else []),
    ('real 4-camera clip: skeleton stability vs MediaPipe world landmarks', 'real_clip.py', []),
    ('left/right label swaps traded back: held-out mocap, real clip', 'label_swaps.py', []),
    ('accuracy: lifters vs baselines on held-out motion capture', 'accuracy.py',
     ['--quick'] if QUICK else []),
    ("person tracking: identity switches vs the detector's output order", 'tracking.py',
     ['--quick'] if QUICK else []),
    ('multi-view fusion: world MPJPE vs plain triangulation; real 4-camera clip', 'fusion.py',
     ['--max-frames', '300', '--causal-frames', '200'] if QUICK else []),
    ('multi-view fusion live: 4 cameras x 30 fps over DDS', 'fusion_live.py',
     ['--seconds', '5'] if QUICK else []),
    ('live joint angles: skeletons at 60 fps into the kinematics node (needs opensim)',
     'kinematics_live.py', ['--seconds', '5'] if QUICK else []),
]


def main() -> int:
    failed = []
    for title, script, args in BENCHMARKS:
        path = os.path.join(HERE, script)
        if not os.path.exists(path):
            continue
        print(f'\n## {title}\n', flush=True)
        r = subprocess.run([sys.executable, path, *args], cwd=HERE)
        if r.returncode:
            failed.append(script)
    if failed:
        print(f'\nfailed: {failed}')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
