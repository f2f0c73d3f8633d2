"""Training batches from worker processes, so that a GPU is not left waiting on numpy.

Every batch is synthesised afresh on the CPU (:func:`train.synth_batch`: interpolation,
bone factors, cameras, detector noise). On one CPU thread that is about half of an
iteration; on a GPU it is all of it. ``workers=0`` synthesises in the training process
itself (deterministic for a seed, the CPU default); ``workers=N`` forks N processes, each
with its own random stream (``SeedSequence(seed).spawn``), feeding a bounded queue.
Forked workers share the motion bank's arrays with the parent (copy-on-write) rather
than pickling them.
"""
from __future__ import annotations

import multiprocessing as mp
import queue
from typing import Callable, Tuple

import numpy as np

Batch = Tuple[np.ndarray, np.ndarray]


def _work(make: Callable[[np.random.Generator], Batch], seed: np.random.SeedSequence,
          out: 'mp.Queue', stop) -> None:
    import torch   # the parent's thread pool does not survive fork; keep workers single
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    while not stop.is_set():
        batch = make(rng)
        while not stop.is_set():
            try:
                out.put(batch, timeout=0.5)
                break
            except queue.Full:
                continue
    out.cancel_join_thread()   # exit without flushing what nobody will read


class BatchFeeder:
    """``next()`` -> one (inputs, targets) batch; a context manager that ends its workers."""

    def __init__(self, make: Callable[[np.random.Generator], Batch], workers: int, seed: int,
                 depth: int = 4):
        self.make, self.workers = make, workers
        self.rng = np.random.default_rng(seed)
        self.procs = []
        if workers > 0:
            ctx = mp.get_context('fork')
            self.queue = ctx.Queue(maxsize=max(depth, workers))
            self.stop = ctx.Event()
            for s in np.random.SeedSequence(seed).spawn(workers):
                p = ctx.Process(target=_work, args=(make, s, self.queue, self.stop), daemon=True)
                p.start()
                self.procs.append(p)

    def next(self) -> Batch:
        if not self.procs:
            return self.make(self.rng)
        while True:
            try:
                return self.queue.get(timeout=30.0)
            except queue.Empty:
                dead = [p.exitcode for p in self.procs if not p.is_alive()]
                if dead:
                    raise RuntimeError(f'batch workers died (exit codes {dead})') from None

    def close(self) -> None:
        if self.procs:
            self.stop.set()
            for p in self.procs:
                p.join(timeout=5.0)
                if p.is_alive():
                    p.terminate()
            self.procs = []

    def __enter__(self) -> 'BatchFeeder':
        return self

    def __exit__(self, *exc) -> None:
        self.close()
