"""Tokenize-once batches equal per-batch tokenization; length-grouped batches keep every row once,
without repeated texts, and with less padding than shuffled batches."""

import numpy as np
import pytest
import torch

from embedding_trainer import models
from embedding_trainer.data.length_grouping import LengthGroupedBatchSampler
from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.data.token_cache import TokenCache, UncachableFeatures
from embedding_trainer.errors import DataError
from embedding_trainer.resolvers import PROJECT_ROOT
from embedding_trainer.train import train

SQUAD = PROJECT_ROOT / "data" / "squad_pairs"


@pytest.fixture(scope="module")
def squad_pairs():
    return read_retrieval_split(SQUAD, "train").pairs().select(range(2048)).to_dict()


def _assert_same_features(expected: dict, got: dict) -> None:
    assert list(expected) == list(got)
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert value.dtype == got[key].dtype and torch.equal(value, got[key]), key
        else:
            assert value == got[key], key


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_token_cache_batches_equal_preprocess(tmp_path, squad_pairs, padding_side):
    # Under no prompt, a query prompt and a document prompt; the same texts under two of them.
    model = models.build_tiny_model(str(tmp_path), max_seq_length=64)
    model.tokenizer.padding_side = padding_side
    anchors, positives = squad_pairs["anchor"][:400], squad_pairs["positive"][:400]
    texts = {None: anchors + positives, "query: ": anchors, "passage: ": positives}
    cache = TokenCache(model.preprocess, texts, max_length=48, chunk_size=100)
    assert cache.padding_side == padding_side
    rng = np.random.default_rng(0)
    for prompt, prompted in texts.items():
        for _ in range(5):
            batch = [prompted[i] for i in rng.choice(len(prompted), size=16, replace=False)]
            expected = model.preprocess(batch, prompt=prompt, max_length=48)
            assert ("prompt_length" in expected) == (prompt is not None)
            _assert_same_features(expected, cache.batch(batch, prompt))
    for prompt in (None, "query: "):
        assert cache.text_lengths(anchors[:3], prompt).tolist() == [
            int(model.preprocess([text], prompt=prompt, max_length=48)["attention_mask"].sum())
            for text in anchors[:3]
        ]


def test_token_cache_refuses_features_it_cannot_pad():
    def preprocess(texts, **options):
        return {
            "input_ids": torch.ones(len(texts), 4),
            "attention_mask": torch.ones(len(texts), 4),
            "lengths": torch.ones(len(texts)),
        }

    with pytest.raises(UncachableFeatures, match="lengths"):
        TokenCache(preprocess, {None: ["a", "b"]}, max_length=None)


def _row_values(pairs):
    return [frozenset(row) for row in zip(pairs["anchor"], pairs["positive"])]


def test_length_grouping_keeps_every_row_once_without_repeated_texts(squad_pairs):
    # Many questions share a paragraph: plain length sorting would put them in one batch.
    lengths = [len(a) + len(p) for a, p in zip(squad_pairs["anchor"], squad_pairs["positive"])]
    values = _row_values(squad_pairs)
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, row_values=values, megabatch_factor=8, seed=3)
    batches = list(sampler)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert sum(len(batch) < 16 for batch in batches) <= 2  # as sentence-transformers' sampler (0 to 2 here)
    for batch in batches:
        texts = [text for i in batch for text in values[i]]
        assert len(texts) == len(set(texts))


def test_length_grouping_is_seeded_per_epoch_and_cuts_padding(squad_pairs):
    lengths = np.array([len(p) for p in squad_pairs["positive"]])
    sampler = LengthGroupedBatchSampler(lengths, batch_size=16, drop_last=True, seed=1)
    first = list(sampler)
    assert first == list(sampler)
    assert all(len(batch) == 16 for batch in first) and len(first) == len(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first

    generator = torch.Generator().manual_seed(1)
    shuffled = torch.randperm(len(lengths), generator=generator).reshape(-1, 16).tolist()

    def padded(batches):
        return sum(len(batch) * lengths[batch].max() for batch in batches)

    assert padded(first) < 0.8 * padded(shuffled)


def test_group_by_length_refuses_label_grouped_batches(make_cfg, no_model_loading):
    cfg = make_cfg(
        "model=tiny", "dataset_type=single_class", "loss=batch_hard_triplet", "data.group_by_length=true"
    )
    with pytest.raises(DataError, match="group_by_length=false"):
        train(cfg)


def test_training_with_length_grouped_cached_batches(make_cfg):
    cfg = make_cfg(
        "model=tiny",
        "logger=none",
        "evaluation.show_progress_bar=false",
        "evaluation.baseline=false",
        "data.max_samples=64",
        "data.max_eval_samples=16",
        "data.batch_size=16",
        "data.group_by_length=true",
    )
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 4
    assert objects["datamodule"].token_cache is not None
    assert 0.0 <= metrics["val/score"] <= 1.0
