"""Hard-negative mining, a data stage: (anchor, positive) rows become (anchor, positive,
negative_1..n) rows, mined by sentence-transformers' `mine_hard_negatives` with the model being
trained (before training), a saved model folder or a hub id, from the training positives or a
corpus of their own. The mined rows are cached under the cache folder, keyed by the miner's
fingerprint (weights, maximum length, pooling, prompts: `encoder_fingerprint`), the rows' and
corpus' fingerprints and every mining setting that changes the result, so a second run with the same
settings does not mine again. A corpus of at least `corpus_on_disk_from` documents is mined with its
embeddings on disk instead (`mining_on_disk`, the same results for `sampling=top`). Rows that get too
few negatives past the filters are kept with sampled negatives or left out, as
`rows_without_negatives` says (`unmined_rows`), and counted."""

import contextlib
import io
import itertools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import datasets
import numpy as np
import torch
from omegaconf import DictConfig
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives

from embedding_trainer.data.chunked import column_chunks
from embedding_trainer.data.mining_on_disk import mine_on_disk
from embedding_trainer.data.sources import read_corpus
from embedding_trainer.data.unmined_rows import WITHOUT_NEGATIVES, with_unmined_rows
from embedding_trainer.models.loading import load_pretrained
from embedding_trainer.settings.block import settings_from_block
from embedding_trainer.utils.atomic_folder import building
from embedding_trainer.utils.errors import ConfigError, DataError
from embedding_trainer.utils.fingerprints import encoder_fingerprint, settings_fingerprint, texts_fingerprint
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

SAMPLINGS = ("top", "random")
SCORES = "scores"  # the miner's column of [positive score, negative scores...] per row


@dataclass(frozen=True)
class HardNegativeSettings:
    """`data.hard_negatives`: `num_negatives` per anchor from the candidates ranked `range_min` to
    `range_max` by the `model` (`base`: the model being trained; else a folder or hub id), the
    `top` ones or `random` ones there; candidates scoring above `max_score`, or within
    `relative_margin` of the positive's score (likely false negatives), are skipped. `corpus`:
    `positives` (the training positives) or a retrieval folder or `{text}` JSONL file. A corpus of at
    least `corpus_on_disk_from` documents (positives included; None: never) keeps its embeddings on
    disk while mining (`mining_on_disk`). `rows_without_negatives`: what becomes of a row with too few
    negatives past the filters: `sampled` (kept, with negatives drawn at random from the corpus, never a
    positive of its anchor) or `drop` (left out)."""

    num_negatives: int = 0
    model: str = "base"
    range_min: int = 0
    range_max: int | None = 20
    sampling: str = "top"
    max_score: float | None = None
    relative_margin: float | None = 0.05
    corpus: str = "positives"
    batch_size: int = 64
    corpus_on_disk_from: int | None = 500_000
    rows_without_negatives: str = "sampled"

    @property
    def enabled(self) -> bool:
        return self.num_negatives > 0

    def check(self) -> None:
        """Raise ConfigError for settings that cannot mine."""
        if (
            isinstance(self.num_negatives, bool)
            or not isinstance(self.num_negatives, int)
            or self.num_negatives < 0
        ):
            raise ConfigError(
                f"data.hard_negatives.num_negatives must be a whole number (0: off), got {self.num_negatives!r}."
            )
        if self.sampling not in SAMPLINGS:
            raise ConfigError(
                f"data.hard_negatives.sampling must be one of {', '.join(SAMPLINGS)}, got {self.sampling!r}."
            )
        if not isinstance(self.range_min, int) or self.range_min < 0:
            raise ConfigError(
                f"data.hard_negatives.range_min must be a whole number of at least 0, got {self.range_min!r}."
            )
        if self.range_max is not None and self.range_max - self.range_min < self.num_negatives:
            raise ConfigError(
                f"data.hard_negatives: the rank window {self.range_min}..{self.range_max} holds fewer than "
                f"num_negatives={self.num_negatives} candidates; raise range_max or lower range_min."
            )
        if self.relative_margin is not None and not 0 <= self.relative_margin < 1:
            raise ConfigError(
                f"data.hard_negatives.relative_margin must be in [0, 1) or null, got {self.relative_margin!r}."
            )
        if self.corpus_on_disk_from is not None and (
            isinstance(self.corpus_on_disk_from, bool)
            or not isinstance(self.corpus_on_disk_from, int)
            or self.corpus_on_disk_from < 0
        ):
            raise ConfigError(
                "data.hard_negatives.corpus_on_disk_from must be a number of documents of at least 0 (null: "
                f"never mine with the corpus on disk), got {self.corpus_on_disk_from!r}."
            )
        if self.rows_without_negatives not in WITHOUT_NEGATIVES:
            raise ConfigError(
                f"data.hard_negatives.rows_without_negatives must be one of {', '.join(WITHOUT_NEGATIVES)}, got "
                f"{self.rows_without_negatives!r} (in_batch is not offered: every batch carries the same "
                "negative columns; docs/data.md says why)."
            )
        if self.corpus != "positives" and not Path(self.corpus).exists():
            raise ConfigError(
                f"data.hard_negatives.corpus={self.corpus} does not exist: use `positives`, a retrieval folder or a "
                "JSONL file of {text} rows."
            )


def hard_negative_settings(data_cfg: DictConfig) -> HardNegativeSettings | None:
    """The checked settings of the `hard_negatives` block of the data config; None when it is
    absent, null or mines nothing."""
    block = data_cfg.get("hard_negatives")
    if not block:
        return None
    settings = settings_from_block(HardNegativeSettings, block, "data.hard_negatives")
    return settings if settings.enabled else None


def mine_for_run(
    rows: datasets.Dataset,
    model: SentenceTransformer,
    settings: HardNegativeSettings,
    encoding: str,
    cache_dir: str | Path,
    seed: int,
    document_title: str = "prepend",
) -> "MinedRows":
    """`mine_cached` with the miner and corpus the settings name (`base`: `model` itself); a
    retrieval-folder corpus builds its documents as the training positives were (`document_title`)."""
    miner, corpus = miner_and_corpus(model, settings, encoding, document_title)
    return mine_cached(rows, miner, settings, corpus, cache_dir, seed)


def miner_and_corpus(
    model: SentenceTransformer, settings: HardNegativeSettings, encoding: str, document_title: str = "prepend"
) -> tuple[SentenceTransformer, list[str] | None]:
    """The miner the settings name (`base`: `model` itself) and their corpus (None: the training positives);
    a retrieval-folder corpus builds its documents as the training positives were (`document_title`)."""
    miner = model if settings.model == "base" else load_pretrained(settings.model)
    corpus = None
    if settings.corpus != "positives":
        corpus = read_corpus(Path(settings.corpus), encoding, document_title)
    return miner, corpus


@dataclass
class MinedRows:
    """The training rows after mining (anchor, positive, negative_1..n): first the `mined` ones, then the
    `sampled` ones (`rows_without_negatives=sampled`); the mined rows' [positive, negatives...] scores by
    the miner; how many training rows there were (`anchors`), how many were left out (`dropped`), the
    miner's own summary, and where they are cached."""

    rows: datasets.Dataset
    scores: list[list[float]]
    anchors: int
    mined: int
    sampled: int
    dropped: int
    summary: str
    seconds: float
    cached: Path
    from_cache: bool

    @property
    def merged(self) -> int:
        """Repeated (anchor, positive) rows that became one row."""
        return self.anchors - self.mined - self.sampled - self.dropped

    def describe(self) -> str:
        source = "read from the cache" if self.from_cache else f"mined in {self.seconds:.0f} s"
        negatives = len(self.rows.column_names) - 2
        merged = f"; {self.merged} repeated (anchor, positive) rows merged" if self.merged else ""
        return (
            f"Hard negatives ({source}, {self.cached}): of {self.anchors} training rows, {self.mined} got "
            f"{negatives} mined negative{'s' if negatives != 1 else ''}, {self.sampled} got sampled ones (too "
            f"few candidates past the filters), {self.dropped} were left out{merged}."
        )

    def to_json(self) -> dict:
        """The counts for results.json."""
        return {
            "training_rows": self.anchors,
            "mined": self.mined,
            "sampled": self.sampled,
            "dropped": self.dropped,
            "merged": self.merged,
            "negatives": len(self.rows.column_names) - 2,
            "from_cache": self.from_cache,
        }


def mining_key(
    rows: datasets.Dataset,
    miner: SentenceTransformer,
    settings: HardNegativeSettings,
    corpus: list[str] | None,
    seed: int,
    disk: bool | None = None,
) -> str:
    """The cache key of mining `rows` with `miner`, `settings`, `corpus` and `seed` (the folder name
    under `<cache_dir>/hard_negatives/`; `disk`: `on_disk`'s answer when known). `corpus_on_disk_from`
    counts only where it changes the result (`random` sampling with the corpus on disk draws otherwise),
    `rows_without_negatives` unless it is `drop` (the rows mined before it existed)."""
    key = asdict(settings)
    del key["corpus_on_disk_from"]
    if key["rows_without_negatives"] == "drop":
        del key["rows_without_negatives"]
    if settings.sampling == "random" and (on_disk(rows, settings, corpus) if disk is None else disk):
        key["drawn_on_disk"] = True
    return settings_fingerprint(
        {
            **key,
            "model": encoder_fingerprint(miner),
            "seed": seed,
            "rows": texts_fingerprint(rows["anchor"], rows["positive"]),
            "corpus": texts_fingerprint(corpus or []),
        }
    )


def mine_cached(
    rows: datasets.Dataset,
    miner: SentenceTransformer,
    settings: HardNegativeSettings,
    corpus: list[str] | None,
    cache_dir: str | Path,
    seed: int,
) -> MinedRows:
    """`rows` (anchor, positive) with mined negatives (and the rows without them, as
    `settings.rows_without_negatives` says), from the cache when these exact settings, miner, rows and
    corpus were mined before; else mined (seeded) and cached."""
    disk = on_disk(rows, settings, corpus)
    folder = Path(cache_dir) / "hard_negatives" / mining_key(rows, miner, settings, corpus, seed, disk)
    if (folder / "meta.json").is_file():
        log.info(f"Hard negatives: reusing {folder} (mined earlier with the same model, data and settings)")
        result = _read(folder, from_cache=True)
        log.info(result.describe())
        return result
    started = time.time()
    if disk:
        folder.parent.mkdir(parents=True, exist_ok=True)
        mined, summary = mine_on_disk(rows, miner, settings, corpus, seed, folder.parent)
    else:
        mined, summary = _mine_in_memory(rows, miner, settings, corpus, seed)
    if len(mined) == 0:
        raise DataError(
            f"Hard-negative mining kept none of the {len(rows)} training rows: no anchor got "
            f"{settings.num_negatives} negatives in ranks {settings.range_min}..{settings.range_max} past the "
            "filters. Lower data.hard_negatives.num_negatives, widen the window, or relax max_score/relative_margin."
        )
    count = len(mined)
    mined, missing = with_unmined_rows(rows, mined, settings.rows_without_negatives, corpus, seed, SCORES)
    counts = {"anchors": len(rows), "mined": count, "sampled": len(mined) - count}
    _write(folder, mined, {**counts, "dropped": missing - counts["sampled"]}, summary, time.time() - started)
    result = _read(folder, from_cache=False)
    log.info(result.describe())
    return result


def on_disk(rows: datasets.Dataset, settings: HardNegativeSettings, corpus: list[str] | None) -> bool:
    """Whether mining `rows` against `corpus` (None: their positives) keeps the corpus embeddings on disk:
    the corpus, positives included, has at least `settings.corpus_on_disk_from` distinct documents (counted
    by their 64-bit str hashes in a sorted array: 8 bytes a text, no set of the texts)."""
    if settings.corpus_on_disk_from is None:
        return False
    chunks = (chunk["positive"] for _, chunk in column_chunks(rows, ["positive"], 65536))
    texts = itertools.chain(*chunks, corpus or ())
    hashes = np.sort(np.fromiter(map(hash, texts), np.int64, count=len(rows) + len(corpus or ())))
    return (
        int(np.count_nonzero(hashes[1:] != hashes[:-1])) + bool(len(hashes)) >= settings.corpus_on_disk_from
    )


def _mine_in_memory(
    rows: datasets.Dataset,
    miner: SentenceTransformer,
    settings: HardNegativeSettings,
    corpus: list[str] | None,
    seed: int,
) -> tuple[datasets.Dataset, str]:
    """sentence-transformers' `mine_hard_negatives` (n-tuples with scores) and the summary it prints."""
    torch.manual_seed(seed)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        mined = mine_hard_negatives(
            rows,
            miner,
            anchor_column_name="anchor",
            positive_column_name="positive",
            corpus=corpus,
            range_min=settings.range_min,
            range_max=settings.range_max,
            max_score=settings.max_score,
            relative_margin=settings.relative_margin,
            num_negatives=settings.num_negatives,
            sampling_strategy=settings.sampling,
            output_format="n-tuple",
            output_scores=True,
            batch_size=settings.batch_size,
            verbose=True,
        )
    return mined, printed.getvalue().strip()


def _write(folder: Path, mined: datasets.Dataset, counts: dict, summary: str, seconds: float) -> None:
    """Store the mining and its `counts` (anchors, mined, sampled, dropped) under `folder` atomically (a
    second run filling it at once wins or loses whole)."""
    with building(folder) as partial:
        mined.save_to_disk(str(partial / "rows"))
        (partial / "meta.json").write_text(json.dumps({**counts, "summary": summary, "seconds": seconds}))


def _read(folder: Path, from_cache: bool) -> MinedRows:
    meta = json.loads((folder / "meta.json").read_text())
    stored = datasets.load_from_disk(str(folder / "rows"))
    mined = meta.get("mined", len(stored))  # a folder from before `rows_without_negatives`: `drop`
    return MinedRows(
        rows=stored.remove_columns(SCORES),
        scores=stored[SCORES][:mined],
        anchors=meta["anchors"],
        mined=mined,
        sampled=meta.get("sampled", 0),
        dropped=meta.get("dropped", meta["anchors"] - mined),
        summary=meta["summary"],
        seconds=meta["seconds"],
        cached=folder,
        from_cache=from_cache,
    )
