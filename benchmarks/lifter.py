"""Lifter speed on CPU for the 243-frame, 1024-channel VideoPose3D architecture.

Prints, measured in the same run:
- streaming cost per frame (StreamingLifter.push: one new output per layer),
- the naive live approach: recomputing one receptive-field window per frame,
- their ratio (goal >= 20x), for 1 and 4 cameras, frame by frame and in blocks of 4 frames
  (StreamingLifter.push_many: each layer's weights read once per block; the 1024-channel
  model is memory-bound on CPU, so one-frame pushes pay for reading its weights);
  with 4 cameras also their frames of one instant lifted together (lift_queued, what the
  lifter node does with frames that are due at the same time: one weight read for all),
- whole-sequence (offline) frames per second,
- the per-frame time's 99th percentile, 1 camera (large dilated layers defer their earlier
  taps and apply them to a batch of frames now and then, see model.StreamingState),
- why frame-by-frame streaming cannot go faster here: the weight bytes it reads per frame
  over this machine's memory bandwidth (a numpy pass over 256 MB, measured in the same
  run) is its floor, and the ratio that floor would give.
Flip augmentation is on in every path (the default). Each figure is the median of
``--rounds`` interleaved rounds (this VM's memory bandwidth drifts).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from vp3d_ros.core.lifter import SequenceLifter, StreamingLifter, lift_queued
from vp3d_ros.core.model import Architecture, build_model, streaming_kernels


def per_frame(fn, frames, warmup=5, times=None):
    """Mean seconds per call of fn over frames[warmup:]; each call's time added to times."""
    for f in frames[:warmup]:
        fn(f)
    t0 = last = time.perf_counter()
    for f in frames[warmup:]:
        fn(f)
        if times is not None:
            now = time.perf_counter()
            times.append(now - last)
            last = now
    return (time.perf_counter() - t0) / (len(frames) - warmup)


def memory_bandwidth(mb=256, repeats=5):
    """Bytes per second of a read pass over an array far larger than the caches."""
    a = np.ones(mb * 2 ** 20 // 4, dtype=np.float32)
    best = min(_timed(a.sum) for _ in range(repeats))
    return a.nbytes / best


def _timed(fn):
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--frames', type=int, default=150)
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--threads', type=int, default=0, help='torch threads (0 = default)')
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    arch = Architecture((3, 3, 3, 3, 3), 1024, causal=False)
    model = build_model(arch)
    rf = arch.receptive_field
    rng = np.random.default_rng(0)
    w, h = 1000, 1002
    kp = rng.uniform([0, 0], [w, h], size=(a.frames, 17, 2))
    print(f'model: {arch.describe()}, torch threads {torch.get_num_threads()}')

    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    read_bytes = streaming_kernels(model).bytes_per_frame  # what streaming reads per frame
    rows = []
    for cams in (1, 4):
        lifters = [StreamingLifter(model, 'h36m', width=w, height=h) for _ in range(cams)]
        seq = SequenceLifter(model, 'h36m')
        # Prime the streams so every timed push is a steady-state push.
        for lf in lifters:
            for f in kp[:rf]:
                lf.push(f)
        window = [np.repeat(kp[:1], rf, axis=0)]

        def recompute(f):
            """Slide the last-RF-frames window and run the whole network over it."""
            window[0] = np.concatenate([window[0][1:], f[None]])
            batch = seq._batch(window[0] / w * 2 - [1, h / w])
            with torch.no_grad():
                for _ in range(cams):  # one window per camera
                    seq.model(batch)
        # Blocks of 4 frames (3 frames more latency; the lifter node's block_frames).
        blocks = [kp[i:i + 4] for i in range(0, len(kp) - 3, 4)]
        queued = [StreamingLifter(model, 'h36m', width=w, height=h, deferred=True)
                  for _ in range(cams)]
        for f in kp[:rf]:
            for lf in queued:
                lf.push(f)
            lift_queued(queued)

        def together(f):
            for lf in queued:
                lf.push(f)
            lift_queued(queued)
        runs = {'stream': [], 'block': [], 'naive': [], 'together': []}
        times = []  # each frame-by-frame push, all rounds
        for _ in range(a.rounds):
            runs['stream'].append(per_frame(lambda f: [lf.push(f) for lf in lifters], kp,
                                            times=times))
            if cams > 1:
                runs['together'].append(per_frame(together, kp))
            runs['naive'].append(per_frame(recompute, kp[:30], warmup=3))
            runs['block'].append(per_frame(lambda b: [lf.push_many(b) for lf in lifters], blocks,
                                           warmup=2) / 4)
        stream, block, naive = (float(np.median(runs[k])) for k in ('stream', 'block', 'naive'))
        rows.append((cams, stream, block, naive))
        print(f'{cams} camera(s): recompute window {1e3 * naive:8.2f} ms/frame | streaming '
              f'{"one camera after another " if cams > 1 else ""}'
              f'{1e3 * stream:7.2f} ms/frame, ratio {naive / stream:5.1f}x | streaming in blocks '
              f'of 4 frames {1e3 * block:7.2f} ms/frame, ratio {naive / block:5.1f}x (goal >= 20x)')
        if cams > 1:
            both = float(np.median(runs['together']))
            print(f'{cams} cameras, frames of one instant lifted together (lift_queued, as the '
                  f'node does): {1e3 * both:7.2f} ms/frame, ratio {naive / both:5.1f}x '
                  '(goal >= 20x)')
        if cams == 1:
            print(f'1 camera, frame by frame: p50 {1e3 * np.percentile(times, 50):.2f} ms, '
                  f'p99 {1e3 * np.percentile(times, 99):.2f} ms, '
                  f'max {1e3 * max(times):.2f} ms per frame')
    bw = memory_bandwidth()
    floor = read_bytes / bw
    print(f'frame-by-frame floor: {read_bytes / 1e6:.0f} MB of weights read per frame and camera '
          f'(of {weight_bytes / 1e6:.0f} MB; see model.StreamingState) at {bw / 1e9:.1f} GB/s '
          f'(this machine, same run) = {1e3 * floor:.2f} ms/frame, so at most '
          f'{rows[0][3] / floor:.1f}x against recomputation on this machine; streaming reached '
          f'{read_bytes / rows[0][1] / 1e9:.1f} GB/s')
    seq = SequenceLifter(model, 'h36m')
    long = rng.uniform([0, 0], [w, h], size=(2000, 17, 2))
    seq.lift(long[:300], w, h)
    t0 = time.perf_counter()
    seq.lift(long, w, h)
    dt = time.perf_counter() - t0
    print(f'whole sequence: {len(long) / dt:8.1f} frames/s ({len(long)} frames in {dt:.2f} s)')
    return rows


if __name__ == '__main__':
    main()
