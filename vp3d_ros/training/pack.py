"""The training mocap as one file small enough to travel to a lent GPU machine, and back.

The ``device`` tool sends the working tree and what it carries, 64 MiB in all; the
mocap/h36m17 folder is 65 MB of float32. Packed (33 MiB): each sequence's root path in
float32 and its joints relative to the root in float16 (rounding at most 0.46 mm on the
shared mocap, printed by ``pack``; far below the detector noise training adds), every other
field as it is. ``unpack``
writes .npz files that :func:`data.load_clips` reads like the originals (same names, so
the same sources, subjects and train/validation split).

    python -m vp3d_ros.training.pack pack ../shared/data/mocap/h36m17 .device_data/mocap.npz
    python -m vp3d_ros.training.pack unpack .device_data/mocap.npz /tmp/mocap
"""
from __future__ import annotations

import argparse
import glob
import os
import sys
from typing import Optional, Sequence

import numpy as np

SEP = '::'   # file :: field [:: root | rel] inside the packed archive


def pack(src_dir: str, dst: str) -> float:
    """Pack every .npz of ``src_dir`` into ``dst``; returns the largest rounding (metres)."""
    files = sorted(glob.glob(os.path.join(src_dir, '*.npz')))
    if not files:
        raise FileNotFoundError(f'no .npz motion files in {src_dir!r}')
    out, worst = {}, 0.0
    for path in files:
        name = os.path.basename(path)
        with np.load(path, allow_pickle=False) as d:
            seqs = set(str(s) for s in d['sequences'])
            for key in d.files:
                arr = d[key]
                if key in seqs:
                    root = arr[:, :1].astype(np.float32)
                    rel = (arr - root).astype(np.float16)
                    worst = max(worst, float(np.abs(rel.astype(np.float32) + root - arr).max()))
                    out[f'{name}{SEP}{key}{SEP}root'] = root[:, 0]
                    out[f'{name}{SEP}{key}{SEP}rel'] = rel
                else:
                    out[f'{name}{SEP}{key}'] = arr
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    np.savez_compressed(dst, **out)
    return worst


def unpack(src: str, dst_dir: str) -> list:
    """Write the original .npz files (float32 sequences) into ``dst_dir``; their paths."""
    files = {}
    with np.load(src, allow_pickle=False) as d:
        for key in d.files:
            parts = key.split(SEP)
            fields = files.setdefault(parts[0], {})
            if len(parts) == 3:
                fields.setdefault(parts[1], {})[parts[2]] = d[key]
            else:
                fields[parts[1]] = d[key]
    os.makedirs(dst_dir, exist_ok=True)
    written = []
    for name, fields in sorted(files.items()):
        arrays = {k: (v['rel'].astype(np.float32) + v['root'][:, None].astype(np.float32)
                      if isinstance(v, dict) else v) for k, v in fields.items()}
        path = os.path.join(dst_dir, name)
        np.savez(path, **arrays)
        written.append(path)
    return written


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('verb', choices=('pack', 'unpack'))
    p.add_argument('src')
    p.add_argument('dst')
    a = p.parse_args(argv)
    if a.verb == 'pack':
        worst = pack(a.src, a.dst)
        print(f'{a.dst}: {os.path.getsize(a.dst) / 2**20:.1f} MiB, '
              f'largest rounding {worst * 1000:.3f} mm')
    else:
        print(f'{len(unpack(a.src, a.dst))} files -> {a.dst}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
