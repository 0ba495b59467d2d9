"""Encoding speed of a distillation student against its teacher, side by side in one process: the same
texts, the same batch size, `SentenceTransformer.encode` (tokenizing included), rounds alternating
teacher and student so both see the same machine load.

Run from the repository root:  .venv/bin/python scripts/bench/student_speed.py [--student "model=minilm_l3"]
Defaults: teacher `model=minilm` (all-MiniLM-L6-v2), student `experiment=distill_minilm_l3`'s model (its
layers 0, 4, 5; each side is Hydra overrides of the training config, space-separated), the
2,067 SQuAD paragraphs and 5,492 test questions of data/squad_pairs, batch 64, best of 3 rounds each.
Prints texts/s of each, the student's speed-up, and a last line of JSON. About 3 minutes on 2 CPU cores.
"""

import argparse
import json
import time

import torch
from hydra import compose, initialize_config_dir

from embedding_trainer.models.loading import load_model
from embedding_trainer.models.settings import ModelSettings
from embedding_trainer.settings.resolvers import CONFIG_DIR, PROJECT_ROOT, register_resolvers

SQUAD = PROJECT_ROOT / "data" / "squad_pairs"


def squad_texts() -> list[str]:
    """The SQuAD paragraphs (title prepended, as the evaluation encodes them) and test questions."""
    paragraphs = [
        json.loads(line) for line in (SQUAD / "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    queries = [
        json.loads(line) for line in (SQUAD / "queries.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    test_ids = {line.split("\t")[0] for line in (SQUAD / "qrels" / "test.tsv").read_text().splitlines()[1:]}
    return [f"{p['title']} {p['text']}" for p in paragraphs] + [
        q["text"] for q in queries if q["_id"] in test_ids
    ]


def model_of(overrides: str):
    """The model of the training config composed with `overrides` (space-separated), in eval mode."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides.split())
    return load_model(ModelSettings.from_config(cfg.model)).eval()


def seconds_to_encode(model, texts: list[str], batch_size: int) -> float:
    start = time.perf_counter()
    with torch.no_grad():
        model.encode(texts, batch_size=batch_size, show_progress_bar=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", default="model=minilm", help="overrides that choose the teacher")
    parser.add_argument(
        "--student", default="experiment=distill_minilm_l3", help="overrides that choose the student"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each (the best counts)")
    parser.add_argument("--limit", type=int, default=None, help="encode only the first N texts")
    args = parser.parse_args()
    register_resolvers()
    texts = squad_texts()[: args.limit]
    models = {"teacher": model_of(args.teacher), "student": model_of(args.student)}
    for model in models.values():  # warm-up: first-call allocations and lazy initialisation
        seconds_to_encode(model, texts[: args.batch_size], args.batch_size)
    timings: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            timings[name].append(seconds_to_encode(model, texts, args.batch_size))
    best = {name: min(values) for name, values in timings.items()}
    for name, model in models.items():
        layers = model[0].auto_model.config.num_hidden_layers
        print(
            f"{name} ({getattr(args, name)}, {layers} layers): {len(texts) / best[name]:.1f} texts/s "
            f"(best of {args.rounds}: {best[name]:.1f} s; rounds {', '.join(f'{s:.1f}' for s in timings[name])} s)"
        )
    speedup = best["teacher"] / best["student"]
    print(
        f"student speed-up: {speedup:.2f}x ({len(texts)} texts, batch {args.batch_size}, {torch.get_num_threads()} threads)"
    )
    print(
        json.dumps({"texts": len(texts), "batch_size": args.batch_size, "seconds": best, "speedup": speedup})
    )


if __name__ == "__main__":
    main()
