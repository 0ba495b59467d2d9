"""Derive the shipped files that are not in the source datasets' own format.

Run from the repository root: `python scripts/derive_data.py`. Reads data/trec_questions, data/stsb,
data/quora_duplicates and data/sick, writes data/derived/ (deterministic: the same files every run),
plain JSONL with exactly the dataset type's columns, so no reader settings are needed:
- trec_train.jsonl, trec_test.jsonl: {sentence, class} with TREC's 6 coarse classes.
- stsb_sentences.jsonl: {sentence}, the distinct sentences of the STS benchmark train split.
- stsb_denoising.jsonl: {damaged_sentence, original_sentence}, those sentences with 60% of words deleted.
- stsb_train.jsonl, stsb_test.jsonl: {sentence_A, sentence_B, score}, the 0-5 score divided by 5.
- quora_dev.jsonl, quora_test.jsonl: {sentence_A, sentence_B, label}, label 1 = duplicate.
- sick_train.jsonl, sick_test.jsonl: {sentence_A, sentence_B, class}, the entailment judgment.
- distillation_sentences.jsonl: {sentence}, the distinct texts of the training parts of the shipped sets,
  for distillation (loss=mse with dataset_type=single): the SQuAD train questions, their paragraphs whole
  and cut into sentences, the questions of the Quora dev pairs, the sentences of the SNLI dev triplets,
  the TREC train questions, and the sentences of the STS benchmark and SICK train splits; none of the
  SQuAD test questions or their paragraphs, nor any STS benchmark test sentence.
- quora_retrieval/: duplicate-question retrieval (as BEIR's Quora task) in the retrieval layout. The
  duplicate pairs of dev and test join questions into clusters; clusters are split 80/20 into train and
  test (seeded). Train: every question of a train cluster is a query, the others in its cluster relevant.
  Test: one question per test cluster (seeded) is the query, the others relevant, and it is left out of
  the corpus (else it would find itself). The corpus is every other distinct question, non-duplicates
  included as distractors.
"""

import csv
import json
import random
from pathlib import Path

from embedding_trainer.data.chunking import SENTENCE_END
from embedding_trainer.data.sources import read_retrieval_split
from embedding_trainer.data.transforms import DeleteWordsNoise

DATA = Path(__file__).resolve().parents[1] / "data"
OUT = DATA / "derived"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{path.relative_to(DATA.parent)}: {len(rows)} rows")


def read_tsv(path: Path) -> list[list[str]]:
    """The fields of every line of a tab-separated file, quoting off (sentences contain quote characters)."""
    with path.open(encoding="utf-8") as handle:
        return list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))


def trec(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="latin-1").splitlines():
        label, question = line.split(" ", 1)
        rows.append({"sentence": question.strip(), "class": label.split(":", 1)[0]})
    return rows


def stsb_sentences(path: Path) -> list[dict]:
    sentences: dict[str, None] = {}
    for fields in read_tsv(path):
        sentences.update({fields[5].strip(): None, fields[6].strip(): None})
    return [{"sentence": sentence} for sentence in sentences if sentence]


def stsb_scores(path: Path) -> list[dict]:
    """STS benchmark lines (genre, file, year, id, score 0-5, sentence 1, sentence 2[, sources]) as
    scored pairs with the score rescaled to [0, 1]."""
    return [{"sentence_A": f[5], "sentence_B": f[6], "score": float(f[4]) / 5.0} for f in read_tsv(path)]


def quora(path: Path) -> list[dict]:
    """Headerless Quora lines (question 1, question 2, 1 if duplicate) as binary-labelled pairs."""
    return [{"sentence_A": f[0], "sentence_B": f[1], "label": int(f[2])} for f in read_tsv(path)]


def question_clusters(pairs: list[tuple[str, str]]) -> list[list[str]]:
    """The groups of questions joined by duplicate pairs (each sorted; in order of their first question)."""
    parent: dict[str, str] = {}

    def root(question: str) -> str:
        parent.setdefault(question, question)
        while parent[question] != question:
            parent[question] = parent[parent[question]]
            question = parent[question]
        return question

    for first, second in pairs:
        parent[root(first)] = root(second)
    clusters: dict[str, list[str]] = {}
    for question in sorted(parent):
        clusters.setdefault(root(question), []).append(question)
    return sorted(clusters.values())


def quora_retrieval(folder: Path, paths: list[Path], test_share: float = 0.2, seed: int = 0) -> None:
    """Write the duplicate-question retrieval folder described in the module docstring."""
    rows = [fields for path in paths for fields in read_tsv(path)]
    questions = sorted({question for fields in rows for question in fields[:2]})
    clusters = question_clusters([(fields[0], fields[1]) for fields in rows if fields[2] == "1"])
    rng = random.Random(seed)
    rng.shuffle(clusters)
    test_count = round(test_share * len(clusters))
    test_queries = {rng.choice(cluster): cluster for cluster in clusters[:test_count]}
    doc_ids = {question: f"d{n}" for n, question in enumerate(q for q in questions if q not in test_queries)}
    queries, qrels = [], {"train": [], "test": []}
    for split, members_of in (
        ("train", {q: c for c in clusters[test_count:] for q in c}),
        ("test", test_queries),
    ):
        for question, cluster in members_of.items():
            query_id = f"q{len(queries)}"
            queries.append({"_id": query_id, "text": question})
            qrels[split] += [(query_id, doc_ids[other]) for other in cluster if other != question]
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    write_jsonl(folder / "corpus.jsonl", [{"_id": i, "title": "", "text": q} for q, i in doc_ids.items()])
    write_jsonl(folder / "queries.jsonl", queries)
    for split, judged in qrels.items():
        lines = ["query-id\tcorpus-id\tscore"] + [f"{query}\t{doc}\t1" for query, doc in judged]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"{(folder / 'qrels' / f'{split}.tsv').relative_to(DATA.parent)}: {len(judged)} judgments")


def sick(path: Path) -> list[dict]:
    """SICK lines (with a header row) as pairs with the entailment judgment as their class."""
    header, *lines = read_tsv(path)
    rows = [dict(zip(header, fields)) for fields in lines]
    return [
        {"sentence_A": r["sentence_A"], "sentence_B": r["sentence_B"], "class": r["entailment_judgment"]}
        for r in rows
    ]


def squad_train_texts(folder: Path) -> list[str]:
    """The train split's questions, then each of their paragraphs (as evaluation reads it: title first)
    followed by its sentences."""
    split = read_retrieval_split(folder, "train")
    paragraphs = dict.fromkeys(doc for docs in split.relevant_docs.values() for doc in docs)
    texts = list(split.queries.values())
    for doc in paragraphs:
        body = split.corpus[doc]
        texts += [body, *SENTENCE_END.split(body)]
    return texts


def distillation_sentences() -> list[dict]:
    """The distinct non-blank texts of the training parts of the shipped sets (module docstring), less the
    SQuAD test questions and their paragraphs, and the STS benchmark test sentences (257 of its train
    sentences recur there)."""
    texts = squad_train_texts(DATA / "squad_pairs")
    texts += [
        question for fields in read_tsv(DATA / "quora_duplicates" / "dev.tsv") for question in fields[:2]
    ]
    triplets = read_tsv(DATA / "nli_triplets" / "triplets_dev.tsv")[1:]
    texts += [sentence for fields in triplets for sentence in fields[:3]]
    texts += [row["sentence"] for row in trec(DATA / "trec_questions" / "train_5500.label")]
    texts += [row["sentence"] for row in stsb_sentences(DATA / "stsb" / "sts-train.csv")]
    texts += [
        row[column]
        for row in sick(DATA / "sick" / "SICK_train.txt")
        for column in ("sentence_A", "sentence_B")
    ]
    squad_test = read_retrieval_split(DATA / "squad_pairs", "test")
    test_paragraphs = {doc for docs in squad_test.relevant_docs.values() for doc in docs}
    scored = {*squad_test.queries.values(), *(squad_test.corpus[doc] for doc in test_paragraphs)}
    scored |= {row["sentence"] for row in stsb_sentences(DATA / "stsb" / "sts-test.csv")}
    distinct = dict.fromkeys(text.strip() for text in texts)
    return [{"sentence": text} for text in distinct if text and text not in scored]


def main() -> None:
    OUT.mkdir(exist_ok=True)
    write_jsonl(OUT / "trec_train.jsonl", trec(DATA / "trec_questions" / "train_5500.label"))
    write_jsonl(OUT / "trec_test.jsonl", trec(DATA / "trec_questions" / "TREC_10.label"))
    sentences = stsb_sentences(DATA / "stsb" / "sts-train.csv")
    write_jsonl(OUT / "stsb_sentences.jsonl", sentences)
    write_jsonl(OUT / "stsb_denoising.jsonl", DeleteWordsNoise(deletion_ratio=0.6, seed=0)(sentences))
    for split in ("train", "test"):
        write_jsonl(OUT / f"stsb_{split}.jsonl", stsb_scores(DATA / "stsb" / f"sts-{split}.csv"))
    for split in ("dev", "test"):
        write_jsonl(OUT / f"quora_{split}.jsonl", quora(DATA / "quora_duplicates" / f"{split}.tsv"))
    write_jsonl(OUT / "sick_train.jsonl", sick(DATA / "sick" / "SICK_train.txt"))
    write_jsonl(OUT / "sick_test.jsonl", sick(DATA / "sick" / "SICK_test_annotated.txt"))
    write_jsonl(OUT / "distillation_sentences.jsonl", distillation_sentences())
    quora_retrieval(
        OUT / "quora_retrieval", [DATA / "quora_duplicates" / f"{split}.tsv" for split in ("dev", "test")]
    )


if __name__ == "__main__":
    main()
