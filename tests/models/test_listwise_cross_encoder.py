"""Listwise rows (dataset_type=listwise) and the listwise cross-encoder losses: the data module's batch fed
to each configured loss equals sentence-transformers' loss on the same (query, passages[], scores[]) rows,
bad rows are refused with the row and the fix before any model loads, and a listwise run trains, evaluates
with sentence-transformers' reranking evaluator and saves a folder `CrossEncoder(path)` loads."""

import json

import pytest
import torch
from hydra.utils import instantiate
from sentence_transformers.cross_encoder import CrossEncoder
from sentence_transformers.cross_encoder import losses as ce_losses
from sentence_transformers.cross_encoder.evaluation import CrossEncoderRerankingEvaluator

from conftest import FAST, assert_refused_before_the_model
from embedding_trainer.data.build import build_datamodule
from embedding_trainer.models import cross_encoder as cross_encoder_module
from embedding_trainer.models.cross_encoder import build_tiny_cross_encoder, text_collator
from embedding_trainer.train import train
from embedding_trainer.training.losses import build_loss
from embedding_trainer.utils.errors import DataError

CROSS = [*(o for o in FAST if not o.startswith("model=")), "model=tiny_cross_encoder"]
LISTWISE = [*CROSS, "dataset_type=listwise", "data.max_samples=16", "data.negatives_per_anchor=3"]


def write_rows(path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.slow  # 5 to 7 s: reads the SQuAD retrieval folder and holds out validation questions
def collator_of(datamodule):
    """The cross-encoder collator the run gives `datamodule`'s listwise rows (`text_collator`)."""
    settings = datamodule.settings
    return text_collator(settings.batching.transform, settings.schema.label_type, [], None)


def test_pairs_become_listwise_rows(make_cfg):
    """SQuAD pairs with 3 sampled negatives: each row is its query, [positive, 3 negatives], [1, 0, 0, 0]."""
    datamodule = build_datamodule(make_cfg(*LISTWISE, "loss=ce_listnet"), lambda: None)
    datamodule.load()
    rows = datamodule.train_dataset
    assert rows.column_names == ["anchor", "passages", "scores"]
    assert all(scores == [1.0, 0.0, 0.0, 0.0] for scores in rows["scores"])
    assert all(len(set(passages)) == 4 for passages in rows["passages"])


@pytest.mark.parametrize(
    ("loss", "expected"),
    [
        ("ce_listnet", ce_losses.ListNetLoss),
        ("ce_listmle", ce_losses.ListMLELoss),
        ("ce_plistmle", ce_losses.PListMLELoss),
        ("ce_lambda", ce_losses.LambdaLoss),
        ("ce_ranknet", ce_losses.RankNetLoss),
    ],
)
def test_listwise_loss_equals_sentence_transformers(make_cfg, tmp_path, loss, expected):
    """The configured loss on the collated batch of listwise rows (lists of different lengths, graded
    scores) equals sentence-transformers' class on (queries, passage lists) and per-row score tensors."""
    rows = [
        {
            "anchor": "what is a cat",
            "passages": ["a cat is an animal", "rivers", "cats purr"],
            "scores": [2, 0, 1],
        },
        {"anchor": "who wrote it", "passages": ["an author wrote it", "the sea"], "scores": [1.0, 0.0]},
        {
            "anchor": "where is paris",
            "passages": ["in france", "tall trees", "a cat", "x"],
            "scores": [3, 1, 0, 0],
        },
    ]
    path = write_rows(tmp_path / "rows.jsonl", rows)
    cfg = make_cfg(
        *CROSS, "dataset_type=listwise", f"loss={loss}", f"data.train_path={path}", f"data.eval_path={path}"
    )
    datamodule = build_datamodule(cfg, lambda: None)
    datamodule.load()
    model = build_tiny_cross_encoder(cfg.paths.cache_dir)
    model.eval()
    built = build_loss(cfg.loss, cfg.modifier, model)
    assert type(built) is expected
    texts, labels = collator_of(datamodule)([datamodule.train_dataset[i] for i in range(3)])
    torch.manual_seed(0)
    ours = built(texts, labels)
    torch.manual_seed(0)
    reference = expected(model)(
        [[row["anchor"] for row in rows], [row["passages"] for row in rows]],
        [torch.tensor(row["scores"], dtype=torch.float) for row in rows],
    )
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-6)


def test_margin_mse_equals_sentence_transformers(make_cfg):
    """ce_margin_mse on listwise rows (positive first): sentence-transformers' MarginMSELoss on (query,
    positive, negative_1..3) columns with the scores [positive, negatives] (it takes their margins)."""
    cfg = make_cfg(*LISTWISE, "loss=ce_margin_mse")
    datamodule = build_datamodule(cfg, lambda: None)
    datamodule.load()
    model = build_tiny_cross_encoder(cfg.paths.cache_dir)
    model.eval()
    built = build_loss(cfg.loss, cfg.modifier, model)
    assert type(built) is ce_losses.MarginMSELoss
    rows = [datamodule.train_dataset[i] for i in range(4)]
    texts, labels = collator_of(datamodule)(rows)
    reference_inputs = [[row["anchor"] for row in rows]] + [
        [row["passages"][i] for row in rows] for i in range(4)
    ]
    reference = ce_losses.MarginMSELoss(model)(reference_inputs, torch.tensor([[1.0, 0, 0, 0]] * 4))
    torch.testing.assert_close(built(texts, labels), reference, rtol=0, atol=1e-6)
    uneven = [rows[0], {**rows[1], "passages": rows[1]["passages"][:2], "scores": [1.0, 0.0]}]
    with pytest.raises(DataError, match="same number of passages"):
        collator_of(datamodule)(uneven)


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"anchor": "q", "passages": [], "scores": []}, "row 1: passages is [], not a nonempty list"),
        ({"anchor": "q", "passages": ["a", "b"], "scores": [1.0]}, "row 1: 2 passages but scores is [1.0]"),
        ({"anchor": "q", "passages": ["a", ""], "scores": [1, 0]}, "row 1: passages ['a', ''] hold an empty"),
        (
            {"anchor": "q", "passages": ["a", "b"], "scores": [1, None]},
            "row 1: scores [1, None] hold a value",
        ),
    ],
)
def test_bad_listwise_rows_are_refused_before_the_model(
    make_cfg, tmp_path, earlier_run, no_model_loading, monkeypatch, row, expected
):
    """A row with no passages, a score per passage missing, an empty passage or a missing score: a DataError
    naming the row, what is wrong and what every row needs, before any model loads."""
    monkeypatch.setattr(cross_encoder_module, "build_tiny_cross_encoder", no_model)
    good = {"anchor": "p", "passages": ["x", "y"], "scores": [1, 0]}
    path = write_rows(tmp_path / "bad.jsonl", [good, row])
    cfg = make_cfg(*CROSS, "dataset_type=listwise", "loss=ce_listnet", f"data.train_path={path}")
    assert_refused_before_the_model(cfg, earlier_run, DataError, [expected, "one score per passage"])


def no_model(*args, **kwargs):
    raise AssertionError("a model was loaded before the input was checked")


@pytest.mark.slow  # about 10 s: builds the tiny model, evaluates 8 queries twice, trains 3 steps
def test_listwise_run_trains_evaluates_and_saves(make_cfg, tmp_path):
    """loss=ce_listnet on listwise SQuAD rows: 3 steps, the reranking evaluation of each eval row's passages
    equals CrossEncoderRerankingEvaluator, and the saved folder loads with CrossEncoder(path)."""
    cfg = make_cfg(
        *LISTWISE,
        "loss=ce_listnet",
        "trainer.fast_dev_run=false",
        "trainer.max_steps=3",
        "data.batch_size=4",
        "data.validation_size=null",
        "data.max_eval_samples=8",
    )
    metrics, objects = train(cfg)
    assert objects["trainer"].global_step == 3
    assert isinstance(objects["module"].loss, ce_losses.ListNetLoss)
    eval_rows = objects["datamodule"].eval_data.rows
    samples = [
        {"query": row["anchor"], "positive": row["passages"][:1], "negative": row["passages"][1:]}
        for row in eval_rows
    ]
    saved = CrossEncoder(objects["model_path"])
    expected = CrossEncoderRerankingEvaluator(samples, at_k=10, write_csv=False)(saved)
    evaluator = instantiate(cfg.dataset_type.reranker_evaluator)(
        objects["datamodule"].eval_data, batch_size=4
    )
    assert evaluator(saved, [1]) == {1: {name: float(value) for name, value in expected.items()}}
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["evaluator"] == "reranking" and "ndcg@10" in results["finetuned"]["1"]
    assert metrics["val/reranking_ndcg@10_dim1"] == pytest.approx(
        results["finetuned"]["1"]["ndcg@10"], abs=1e-6
    )
