"""Data order as a function of (seed, step): exact resume, also under another number of processes.

The sample stream is the concatenation of per-epoch permutations, epoch ``e`` shuffled by a
generator seeded with ``(seed, e)``. Step ``s`` takes the stream positions
``[s * G, (s + 1) * G)`` for the global batch size ``G``; rank ``r`` of ``W`` processes takes the
``r``-th of ``W`` equal slices of it. So the global batch of a step does not depend on how many
processes share it, and a resumed run needs no sampler state: it starts at its step. This is
``DistributedSampler``'s idea (a seeded per-epoch permutation split across ranks), indexed by
step instead of by epoch.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from fm_core.training.seed import DATA_STREAM, step_seed  # the apps' one seeding scheme

__all__ = ["StepBatchSampler", "step_seed"]


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields this rank's index list for steps ``start_step, start_step + 1, ..., total_steps - 1``.

    Args:
        num_samples: size of the data set.
        global_batch_size: samples per optimizer micro-step summed over all ranks.
        seed: the run's seed.
        start_step: first micro-step to yield.
        total_steps: one past the last micro-step.
        rank: this process's rank.
        world_size: number of processes; must divide ``global_batch_size``.
    """

    def __init__(
        self,
        num_samples: int,
        global_batch_size: int,
        *,
        seed: int,
        start_step: int,
        total_steps: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_samples < 1:
            raise ValueError(f"num_samples must be positive, got {num_samples}")
        if global_batch_size % world_size:
            raise ValueError(
                f"batch size {global_batch_size} must be divisible by the number of processes "
                f"{world_size}"
            )
        self.n = num_samples
        self.batch = global_batch_size
        self.seed = seed
        self.start = start_step
        self.total = total_steps
        self.rank = rank
        self.world = world_size
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def _epoch_perm(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            g = torch.Generator().manual_seed(step_seed(self.seed, epoch, stream=DATA_STREAM))
            self._perm = torch.randperm(self.n, generator=g)
            self._perm_epoch = epoch
        return self._perm

    def global_indices(self, step: int) -> list[int]:
        """The global batch of micro-step ``step``: ``G`` indices into the data set."""
        out: list[int] = []
        pos = step * self.batch
        while len(out) < self.batch:
            epoch, offset = divmod(pos, self.n)
            take = min(self.batch - len(out), self.n - offset)
            out += self._epoch_perm(epoch)[offset : offset + take].tolist()
            pos += take
        return out

    def __iter__(self) -> Iterator[list[int]]:
        per_rank = self.batch // self.world
        for step in range(self.start, self.total):
            idx = self.global_indices(step)
            yield idx[self.rank * per_rank : (self.rank + 1) * per_rank]

    def __len__(self) -> int:
        return max(0, self.total - self.start)
