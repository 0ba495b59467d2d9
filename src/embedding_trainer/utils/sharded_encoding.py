"""Encoding shared out across the processes of a data-parallel run.

Inside `sharded_encoding`, every call of `embedding_cache.encode` (so every evaluator's encoding, cached
or not) encodes only this process's share of its texts and all-gathers the others' shares: each process
encodes 1/world_size of the texts and every process ends with all the embeddings, in the order of the
texts. Every process must make the same encode calls, with the same texts, in the same order.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """This process's share of a list of texts: every `world_size`-th text, from the `rank`-th on.
    `device`: where the process group's collectives run (a CUDA device for NCCL, the CPU for gloo)."""

    rank: int
    world_size: int
    device: torch.device

    def take(self, texts: list[str]) -> list[str]:
        return texts[self.rank :: self.world_size]

    def gather(self, mine: torch.Tensor, total: int) -> torch.Tensor:
        """The rows of every process's share (`mine` is this one's: `take` of a list of `total` texts)
        put back in the order of the whole list, on the CPU. The shares differ in length by at most
        one, so each is padded to the longest for the all-gather."""
        longest = -(-total // self.world_size)
        padded = torch.zeros(longest, mine.shape[1], dtype=mine.dtype, device=self.device)
        padded[: len(mine)] = mine.to(self.device)
        shares = [torch.empty_like(padded) for _ in range(self.world_size)]
        dist.all_gather(shares, padded)
        rows = torch.empty(total, mine.shape[1], dtype=mine.dtype)
        for rank, share in enumerate(shares):
            rows[rank :: self.world_size] = share[: len(range(rank, total, self.world_size))].cpu()
        return rows

    def all_agree(self, flag: bool) -> bool:
        """True when `flag` is true in every process (each must call it)."""
        value = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())


_current: ContextVar[Shard | None] = ContextVar("encoding_shard", default=None)


def current_shard() -> Shard | None:
    """The share this process encodes inside `sharded_encoding` (None outside it, or with one process)."""
    return _current.get()


@contextmanager
def sharded_encoding(device: torch.device) -> Iterator[Shard | None]:
    """Encoding inside the block is shared out across the processes of the default process group, with
    collectives on `device`; with no process group, or one of a single process, it changes nothing."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        yield None
        return
    token = _current.set(Shard(dist.get_rank(), dist.get_world_size(), torch.device(device)))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
