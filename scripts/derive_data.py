"""Derive the shipped files that are not in the source datasets' own format.

Run from the repository root: `python scripts/derive_data.py`. Reads data/trec_questions and
data/stsb, writes data/derived/ (deterministic: the same files every run):
- trec_train.jsonl, trec_test.jsonl: {sentence, class} with TREC's 6 coarse classes.
- stsb_sentences.jsonl: {sentence}, the distinct sentences of the STS benchmark train split.
- stsb_denoising.jsonl: {damaged_sentence, original_sentence}, those sentences with 60% of words deleted.
"""

import csv
import json
from pathlib import Path

from embedding_trainer.data.transforms import DeleteWordsNoise

DATA = Path(__file__).resolve().parents[1] / "data"
OUT = DATA / "derived"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{path.relative_to(DATA.parent)}: {len(rows)} rows")


def trec(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text(encoding="latin-1").splitlines():
        label, question = line.split(" ", 1)
        rows.append({"sentence": question.strip(), "class": label.split(":", 1)[0]})
    return rows


def stsb_sentences(path: Path) -> list[dict]:
    sentences: dict[str, None] = {}
    with path.open(encoding="utf-8") as handle:
        for fields in csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE):
            sentences.update({fields[5].strip(): None, fields[6].strip(): None})
    return [{"sentence": sentence} for sentence in sentences if sentence]


def main() -> None:
    OUT.mkdir(exist_ok=True)
    write_jsonl(OUT / "trec_train.jsonl", trec(DATA / "trec_questions" / "train_5500.label"))
    write_jsonl(OUT / "trec_test.jsonl", trec(DATA / "trec_questions" / "TREC_10.label"))
    sentences = stsb_sentences(DATA / "stsb" / "sts-train.csv")
    write_jsonl(OUT / "stsb_sentences.jsonl", sentences)
    write_jsonl(OUT / "stsb_denoising.jsonl", DeleteWordsNoise(deletion_ratio=0.6, seed=0)(sentences))


if __name__ == "__main__":
    main()
