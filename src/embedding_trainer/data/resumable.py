"""A training DataLoader whose position in the epoch is part of Lightning checkpoints.

Without one, a run resumed mid-epoch would start the epoch's batches from the beginning. The state
is the epoch, the number of batches handed out in it, and the batch sampler's random generators
(at the epoch's start and now), so the resumed epoch draws the same batches and skips the ones
already trained on. It travels in the data module's state (`ResumableTrainData`), which Lightning
restores before the loader is built, and in Lightning's own stateful-loader slot of the fit loop.
"""

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader, Sampler


def _generators(sampler) -> list[torch.Generator]:
    """The distinct torch generators of `sampler` and the samplers it draws from (its chain of
    `.sampler` attributes, and the `batch_samplers` of a multi-dataset sampler), in a fixed order."""
    found: list[torch.Generator] = []
    pending = [sampler]
    while pending:
        current = pending.pop(0)
        if current is None:
            continue
        generator = getattr(current, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
        pending += [getattr(current, "sampler", None), *getattr(current, "batch_samplers", [])]
    return found


class ResumableBatchSampler(Sampler[list[int]]):
    """Wraps a batch sampler: forwards `set_epoch`, remembers its generators' state at the start of
    each pass, and after `resume(...)` replays that state and drops the first `skip` batches of its
    next pass. `len()` stays the full epoch's count."""

    def __init__(self, sampler) -> None:
        self.sampler = sampler
        self.epoch = 0
        self.skip = 0
        self.pass_start_states: list[torch.Tensor] = [g.get_state() for g in _generators(sampler)]
        self._resume_states: list[torch.Tensor] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def resume(self, epoch: int, skip: int, generator_states: list[torch.Tensor]) -> None:
        """Make the next pass the rest of epoch `epoch` after its first `skip` batches."""
        self.set_epoch(epoch)
        self.skip = skip
        self._resume_states = generator_states

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[list[int]]:
        generators = _generators(self.sampler)
        if self._resume_states is not None:
            if len(self._resume_states) != len(generators):
                raise RuntimeError("The checkpoint's batch sampler has a different set of random generators.")
            for generator, state in zip(generators, self._resume_states):
                generator.set_state(state)
            self._resume_states = None
        self.pass_start_states = [g.get_state() for g in generators]
        skip, self.skip = self.skip, 0
        for index, batch in enumerate(self.sampler):
            if index >= skip:
                yield batch


class ResumableDataLoader(DataLoader):
    """A DataLoader over a `ResumableBatchSampler` wrapping `batch_sampler`, with `state_dict` /
    `load_state_dict` (Lightning's stateful-loader protocol). State: the epoch, the batches handed out
    in it, whether it is over, and the generators' states at its start and now (a finished epoch
    resumes at the next one, whose shuffle starts from the generators' current state)."""

    def __init__(self, dataset, batch_sampler, **kwargs) -> None:
        # Its own generator for the per-iterator worker seed: drawn from the global one, it would
        # shift the global random state (dropout) whenever a resumed run makes a new iterator.
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, batch_sampler=ResumableBatchSampler(batch_sampler), **kwargs)
        self.position = 0
        self.epoch_over = False

    def __iter__(self) -> Iterator:
        self.position, self.epoch_over = self.batch_sampler.skip, False
        for batch in super().__iter__():
            self.position += 1
            yield batch
        self.epoch_over = True

    def state_dict(self) -> dict:
        return {
            "epoch": self.batch_sampler.epoch,
            "position": self.position,
            "epoch_over": self.epoch_over or self.position >= len(self),
            "epoch_start_states": self.batch_sampler.pass_start_states,
            "current_states": [g.get_state() for g in _generators(self.batch_sampler.sampler)],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        if state_dict["epoch_over"]:
            self.batch_sampler.resume(state_dict["epoch"] + 1, 0, state_dict["current_states"])
        else:
            self.batch_sampler.resume(
                state_dict["epoch"], state_dict["position"], state_dict["epoch_start_states"]
            )


class ResumableTrainData:
    """Mixin for a LightningDataModule whose `train_dataloader` returns `self.resumable(loader)`.

    Lightning restores a data module's state before it builds the train loader, whereas it hands
    a stateful loader its saved state only if the loader is built after the restore (not so when
    the LR schedule asks for the number of steps first); so the position travels here: the data
    module's `state_dict` is its latest train loader's, and a loaded one goes to the next loader made.
    """

    _train_loader: ResumableDataLoader | None = None
    _pending_state: dict | None = None

    def resumable(self, loader: ResumableDataLoader) -> ResumableDataLoader:
        if self._pending_state is not None:
            loader.load_state_dict(self._pending_state)
            self._pending_state = None
        self._train_loader = loader
        return loader

    def state_dict(self) -> dict:
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending_state = state_dict.get("train_loader")
