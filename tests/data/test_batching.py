"""Tokenize-once batches equal per-batch tokenization; no-duplicates batches of the default data
(length-grouped or not) train every row once in full batches without repeated texts, and
length-grouped ones with less padding than shuffled batches."""

import datasets
import numpy as np
import pytest
import torch

from embedding_trainer.data.build import build_datamodule
from embedding_trainer.data.length_grouping import LengthGroupedBatchSampler
from embedding_trainer.data.row_values import row_values
from embedding_trainer.data.samplers import NoDuplicatesBatchSampler
from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.data.token_cache import TokenCache, UncachableFeatures
from embedding_trainer.models import loading as models
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.settings.resolvers import PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.utils.errors import DataError

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


@pytest.mark.parametrize("grouped", [True, False])
def test_no_duplicates_batches_of_the_default_data_train_every_row_once(squad_pairs, grouped):
    # Issue 27: 2,048 SQuAD pairs in batches of 32, many questions sharing a paragraph. Length-grouped
    # batches yielded 66 and 65 batches for a len() of 64, some of 1 row (a loss of exactly 0).
    rows = datasets.Dataset.from_dict(squad_pairs)
    values = row_values(rows, ["anchor", "positive"])
    if grouped:
        lengths = [len(a) + len(p) for a, p in zip(squad_pairs["anchor"], squad_pairs["positive"])]
        sampler = LengthGroupedBatchSampler(lengths, batch_size=32, row_values=values, seed=3)
    else:
        sampler = NoDuplicatesBatchSampler(rows, batch_size=32, drop_last=False, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 64
        assert {len(batch) for batch in batches} == {32}
        assert sorted(i for batch in batches for i in batch) == list(range(len(rows)))
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


@pytest.mark.slow
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


@pytest.mark.parametrize(
    "overrides, sampler_class, no_duplicates",
    [
        (["data.group_by_length=true"], LengthGroupedBatchSampler, True),
        (["data.group_by_length=false"], NoDuplicatesBatchSampler, True),
        (
            ["data.group_by_length=true", "loss=cosent", "dataset_type=score"],
            LengthGroupedBatchSampler,
            False,
        ),
    ],
)
def test_the_data_module_batches_with_the_loss_sampler_promise(
    make_cfg, overrides, sampler_class, no_duplicates
):
    cfg = make_cfg("model=tiny", "data.max_samples=64", *overrides)
    datamodule = build_datamodule(cfg)
    datamodule.load()
    datamodule.use_model(models.load_model(ModelSettings.from_config(cfg.model)))
    sampler, _ = datamodule.global_batches(world_size=2)
    assert type(sampler) is sampler_class and sampler.batch_size == 2 * cfg.data.batch_size
    assert (sampler.row_values is not None) == no_duplicates
