"""Knowledge distillation: the teacher's outputs computed once (cached) and fed as labels, the three
distillation losses training a real student, layer reduction, and the config errors."""

import json

import numpy
import pytest
import torch
from sentence_transformers import SentenceTransformer

from conftest import FAST
from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.models.layer_reduction import keep_layers
from embedding_trainer.models.loading import load_model
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.settings.resolvers import CONFIG_DIR, PROJECT_ROOT
from embedding_trainer.train import train
from embedding_trainer.training.teacher import TeacherTargets
from embedding_trainer.utils import embedding_cache
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.fingerprints import encoder_fingerprint, file_fingerprint
from embedding_trainer.utils.text_vectors import TextVectors

TEACHER = ["teacher=tiny", "teacher.encoder.seed=1"]  # the tiny model, other random weights
# Distillation trains from the first step: no fast_dev_run, a few batches of the shipped SQuAD pairs.
DISTIL = [
    "model=tiny",
    "logger=none",
    "callbacks=none",
    "evaluation.show_progress_bar=false",
    "evaluation.forgetting_guard=null",
    "evaluation.health=null",
    "data.max_samples=64",
    "data.max_eval_samples=16",
    "data.batch_size=16",
    *TEACHER,
]


def _vectors(rows: dict[str, list[float]]) -> TextVectors:
    texts = list(rows)
    return TextVectors(torch.tensor([rows[text] for text in texts]), {t: i for i, t in enumerate(texts)})


def test_teacher_targets_are_each_columns_embedding_or_the_anchors_dot_products():
    vectors = {
        "query": _vectors({"q1": [1.0, 0.0], "q2": [0.0, 2.0]}),
        "document": _vectors({"p1": [3.0, 1.0], "p2": [1.0, 1.0], "n1": [-1.0, 5.0]}),
    }
    rows = [
        {"anchor": "q1", "positive": "p1", "negative": "n1"},
        {"anchor": "q2", "positive": "p2", "negative": "p1"},
    ]
    one = TeacherTargets(vectors, ["anchor"], "embeddings")(rows)
    assert torch.equal(one, torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    several = TeacherTargets(vectors, ["anchor", "positive"], "embeddings")(rows)
    assert several.shape == (2, 2, 2) and torch.equal(several[:, 1], torch.tensor([[3.0, 1.0], [1.0, 1.0]]))
    scores = TeacherTargets(vectors, ["anchor", "positive", "negative"], "scores")(rows)
    # q1.p1 = 3, q1.n1 = -1; q2.p2 = 2, q2.p1 = 2.
    assert torch.equal(scores, torch.tensor([[3.0, -1.0], [2.0, 2.0]]))


def _texts(run_dir) -> list[str]:
    rows = [json.loads(line) for line in (run_dir / "data" / "train.jsonl").read_text().splitlines()]
    return sorted({row[column] for row in rows for column in ("anchor", "positive")})


@pytest.mark.slow
def test_mse_distillation_moves_the_student_towards_the_teacher_whose_outputs_are_computed_once(
    make_cfg, tmp_path, monkeypatch
):
    job = [*DISTIL, "loss=mse", "modifier=none", "model.lr=3e-3", "trainer.max_epochs=3"]
    first = make_cfg(*job, f"paths.cache_dir={tmp_path / 'cache'}", output_dir=tmp_path / "first")
    teacher = load_model(ModelSettings.from_config(first.teacher, "teacher")).eval()
    student = load_model(ModelSettings.from_config(first.model)).eval()
    teacher_print = encoder_fingerprint(teacher)
    encoded_by: list[str] = []
    real_encode = embedding_cache.encode

    def spying_encode(model, texts, *args, **kwargs):
        encoded_by.append(encoder_fingerprint(model))
        return real_encode(model, texts, *args, **kwargs)

    monkeypatch.setattr(embedding_cache, "encode", spying_encode)
    train(first)
    # The teacher encoded each set of texts (training questions, the corpus holding the training paragraphs,
    # the eval questions) once, each stored in the cache; the report compares the student with it.
    stored = list((tmp_path / "cache" / "embeddings" / teacher_print).glob("*.npy"))
    assert encoded_by.count(teacher_print) == len(stored) == 3
    compared = json.loads((tmp_path / "first" / "results.json").read_text())["teacher"]["retrieval"]
    assert compared["metric"] == "ndcg@10" and set(compared["by_dimension"]) == {"32", "16", "8"}
    assert "## Student and teacher" in (tmp_path / "first" / "report.md").read_text()
    texts = _texts(tmp_path / "first")
    with torch.no_grad():
        target = teacher.encode(texts, convert_to_tensor=True)
        before = torch.nn.functional.mse_loss(student.encode(texts, convert_to_tensor=True), target)
        trained = SentenceTransformer(str(tmp_path / "first" / "model"))
        after = torch.nn.functional.mse_loss(trained.encode(texts, convert_to_tensor=True), target)
    assert after < 0.5 * before, (before, after)

    encoded_by.clear()
    second = [*job, "trainer.max_steps=1", f"paths.cache_dir={tmp_path / 'cache'}"]
    train(make_cfg(*second, output_dir=tmp_path / "second"))
    assert teacher_print not in encoded_by  # the second run reads the teacher's outputs from the cache


MINED = [
    "data.hard_negatives.num_negatives=2",
    "data.hard_negatives.range_min=0",
    "data.hard_negatives.range_max=16",
    "data.hard_negatives.relative_margin=null",
]


@pytest.mark.parametrize(
    "loss, data",
    [
        ("margin_mse", ["dataset_type=triplet"]),
        ("distill_kl", ["dataset_type=triplet"]),
        ("margin_mse", MINED),
    ],
    ids=["margin_mse", "distill_kl", "margin_mse_on_mined_negatives"],
)
@pytest.mark.slow
def test_score_distillation_losses_train_with_the_teachers_scores(make_cfg, tmp_path, loss, data):
    run_dir = tmp_path / "run"
    cfg = make_cfg(*DISTIL, f"loss={loss}", *data, "trainer.max_steps=2", output_dir=run_dir)
    train(cfg)
    results = json.loads((run_dir / "results.json").read_text())
    assert results["step"] == 2 and set(results["finetuned"]) == {"32", "16", "8"}


@pytest.mark.slow
def test_a_student_of_another_dimension_trains_through_the_losss_projection(make_cfg, tmp_path):
    # The teacher embeds in 48 dims, the student in 32: MSELoss's projection maps the student's into 48.
    teacher = ["teacher.encoder.hidden_size=48", "teacher.dimension=48", "teacher.encoder.num_heads=2"]
    job = [*DISTIL, *teacher, "loss=mse", "modifier=none", "trainer.max_steps=2"]
    with pytest.raises(ConfigError, match=r"set loss.projection_dim=48"):
        train(make_cfg(*job, output_dir=tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    train(make_cfg(*job, "loss.projection_dim=48", output_dir=tmp_path / "run"))
    assert SentenceTransformer(str(tmp_path / "run" / "model")).get_embedding_dimension() == 32


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["loss=mse", "modifier=none"],
            r"learns from a teacher's outputs, and the run has none: add teacher=",
        ),
        ([*TEACHER], r"teacher is set but MultipleNegativesRankingLoss does not learn from one"),
        ([*TEACHER, "loss=margin_mse"], r"cannot train on dataset_type=pair"),
        ([*TEACHER, "loss=mse", "modifier=matryoshka"], r"Use modifier="),
    ],
    ids=["no_teacher", "no_distillation_loss", "margin_needs_negatives", "matryoshka"],
)
def test_distillation_configs_that_cannot_work_stop_before_anything_loads(
    make_cfg, no_model_loading, tmp_path, overrides, message
):
    with pytest.raises(ConfigError, match=message):
        train(make_cfg(*FAST, *overrides, output_dir=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_minilm_l3_keeps_layers_0_2_4_of_minilm_and_saves_as_a_three_layer_model(make_cfg, tmp_path):
    full = load_model(ModelSettings.from_config(make_cfg("model=minilm").model))
    student = load_model(ModelSettings.from_config(make_cfg("model=minilm_l3").model))
    layers = student[0].auto_model.encoder.layer
    assert len(layers) == 3 and student[0].auto_model.config.num_hidden_layers == 3
    for kept, original in zip(layers, [0, 2, 4]):
        for (name, weight), (_, source) in zip(
            kept.named_parameters(), full[0].auto_model.encoder.layer[original].named_parameters()
        ):
            assert torch.equal(weight, source), name
    student.save(str(tmp_path / "student"))
    reloaded = SentenceTransformer(str(tmp_path / "student"))
    texts = ["A student of three layers.", "It encodes as it did before saving."]
    assert len(reloaded[0].auto_model.encoder.layer) == 3
    assert torch.allclose(
        reloaded.encode(texts, convert_to_tensor=True),
        student.encode(texts, convert_to_tensor=True),
        atol=1e-6,
    )


@pytest.mark.parametrize("layers", [[], [0, 0], [2]], ids=["none", "repeated", "missing"])
def test_keep_layers_refuses_layers_the_model_does_not_have(make_cfg, layers):
    model = load_model(ModelSettings.from_config(make_cfg("model=tiny").model))  # two layers
    with pytest.raises(ConfigError, match=r"must name distinct blocks of the model's 2 \(0 to 1\)"):
        keep_layers(model, layers)


def test_every_embedding_model_option_is_a_teacher_option_of_the_same_config():
    # A cross-encoder (`family: cross_encoder`) is not a teacher yet: issue 30's reranker teacher.
    models = {
        path.stem
        for path in (CONFIG_DIR / "model").glob("*.yaml")
        if "family: cross_encoder" not in path.read_text()
    }
    assert {"minilm", "tiny"} <= models and not {"cross_encoder", "tiny_cross_encoder"} & models
    assert models == {path.stem for path in (CONFIG_DIR / "teacher").glob("*.yaml")}
    for name in models:
        assert f"/model/{name}@_here_" in (CONFIG_DIR / "teacher" / f"{name}.yaml").read_text()


def test_a_decoder_keeps_its_chosen_layers_and_their_types_and_saves_as_the_smaller_model(make_cfg, tmp_path):
    model = load_model(ModelSettings.from_config(make_cfg("model=tiny_decoder").model))
    decoder = model[0].auto_model
    second = decoder.layers[1]
    keep_layers(model, [1])
    assert list(decoder.layers) == [second] and decoder.config.num_hidden_layers == 1
    assert len(decoder.config.layer_types) == 1
    model.save(str(tmp_path / "student"))
    reloaded = SentenceTransformer(str(tmp_path / "student"))
    texts = ["one layer left", "of two"]
    assert len(reloaded[0].auto_model.layers) == 1
    assert torch.allclose(
        reloaded.encode(texts, convert_to_tensor=True), model.encode(texts, convert_to_tensor=True), atol=1e-5
    )


def _small_retrieval_folder(folder, queries: int = 12, distractors: int = 20):
    """The first `queries` SQuAD test questions, their paragraphs and `distractors` other paragraphs, in
    the retrieval layout (only a `test` split)."""
    split = read_retrieval_split(PROJECT_ROOT / "data" / "squad_pairs", "test")
    kept = dict(list(split.relevant_docs.items())[:queries])
    relevant = {doc for docs in kept.values() for doc in docs}
    docs = sorted(relevant) + sorted(set(split.corpus) - relevant)[:distractors]
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": doc, "text": split.corpus[doc]}) + "\n" for doc in docs)
    )
    (folder / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": split.queries[q]}) + "\n" for q in kept)
    )
    rows = "".join(f"{q}\t{doc}\t1\n" for q, docs in kept.items() for doc in docs)
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + rows)
    return folder


@pytest.mark.slow
def test_the_distillation_experiment_trains_on_single_sentences_and_scores_retrieval_and_sts(
    make_cfg, tmp_path
):
    folder = _small_retrieval_folder(tmp_path / "squad_small")
    cfg = make_cfg(
        "experiment=distill_minilm_l3",
        "model=tiny",
        "~model.encoder.keep_layers",  # the experiment keeps layers of MiniLM-L6; the tiny model has 2
        *TEACHER,
        "logger=none",
        "callbacks=none",
        "evaluation.show_progress_bar=false",
        "evaluation.health=null",
        "evaluation.forgetting_max_drop=0.02",  # keeps the STS benchmark evaluation on (conftest.GUARDS_OFF)
        "data.max_samples=64",
        "data.batch_size=16",
        "trainer.max_epochs=1",
        f"dataset_type.evaluator.path={folder}",
    )
    train(cfg)
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    # Scored on the folder's 12 test questions, with the STS benchmark beside it, student against teacher.
    assert results["evaluator"] == "retrieval" and results["primary_metric"] == "ndcg@10"
    assert len(numpy.load(run / "per_example" / "finetuned.npz")["example_ids"]) == 12
    assert results["general"]["data"].endswith("stsb_test.jsonl")
    assert set(results["teacher"]) == {"retrieval", results["general"]["data"]}
    assert results["provenance"]["data"]["train"]["columns"] == ["sentence"]
    assert f"| evaluation data | {folder} (split test) |" in (run / "report.md").read_text()
    assert results["provenance"]["data"]["eval"] == {
        "source": str(folder),
        "file_fingerprint": file_fingerprint(folder),
    }
