"""The train loader's position is its state: a new loader given it continues the same batches."""

import datasets
import pytest
import torch

from embedding_trainer.data.distributed import ShardedBatchSampler
from embedding_trainer.data.length_grouping import LengthGroupedBatchSampler
from embedding_trainer.data.resumable import ResumableDataLoader
from embedding_trainer.data.samplers import NoDuplicatesBatchSampler, ShuffledBatchSampler

ROWS = datasets.Dataset.from_dict(
    {"anchor": [f"a{i}" for i in range(22)], "positive": [f"p{i}" for i in range(22)]}
)


def _loader(make_sampler) -> ResumableDataLoader:
    sampler = make_sampler(ROWS, batch_size=4, drop_last=False, generator=torch.Generator(), seed=3)
    return ResumableDataLoader(
        ROWS,
        batch_sampler=ShardedBatchSampler(sampler, 0, 1),
        collate_fn=lambda rows: [row["anchor"] for row in rows],
    )


def _epoch(loader: ResumableDataLoader, epoch: int) -> list[list[str]]:
    loader.batch_sampler.set_epoch(epoch)  # as Lightning does at each epoch start
    return list(loader)


def _length_grouped(dataset, batch_size, drop_last, generator, seed):
    return LengthGroupedBatchSampler(
        [len(text) for text in dataset["anchor"]], batch_size, drop_last, megabatch_factor=2, seed=seed
    )


SAMPLERS = [ShuffledBatchSampler, NoDuplicatesBatchSampler, _length_grouped]


@pytest.mark.parametrize("make_sampler", SAMPLERS)
@pytest.mark.parametrize("epoch, stop_after", [(0, 2), (1, 4), (0, 6)])  # (0, 6): after the whole epoch
def test_resumed_loader_continues_with_the_batches_not_yet_seen(make_sampler, epoch, stop_after):
    uninterrupted = _loader(make_sampler)
    expected = [_epoch(uninterrupted, e) for e in range(3)]
    assert expected[0] != expected[1]  # each epoch its own shuffle

    stopped = _loader(make_sampler)
    for e in range(epoch):
        _epoch(stopped, e)
    stopped.batch_sampler.set_epoch(epoch)
    iterator = iter(stopped)
    seen = [next(iterator) for _ in range(stop_after)]
    assert seen == expected[epoch][:stop_after]
    state = stopped.state_dict()

    resumed = _loader(make_sampler)
    resumed.load_state_dict(state)
    if stop_after == len(expected[epoch]):  # the epoch was over: Lightning goes on with the next one
        resumed.batch_sampler.set_epoch(epoch + 1)
        assert list(resumed) == expected[epoch + 1]
        return
    resumed.batch_sampler.set_epoch(epoch)  # Lightning sets the restored epoch again
    assert list(resumed) == expected[epoch][stop_after:]
    assert resumed.state_dict()["position"] == len(expected[epoch])
    assert _epoch(resumed, epoch + 1) == expected[epoch + 1]
