"""Statistics across seeds: the Student-t interval itself, and a real multi-run of three seeds whose
`summary.json`, `summary.md` and `runs compare --group` agree with a recomputation from its results.json."""

import json
import math
import os
import statistics
import subprocess
import sys

import pytest
from scipy import stats

from conftest import SCORE_STEP
from embedding_trainer.reporting.seeds import Estimate, SeedRun, estimate, group_runs
from embedding_trainer.runs.__main__ import main as runs_cli
from embedding_trainer.settings.resolvers import PROJECT_ROOT

# One training step at the full learning rate (no warm-up).
JOB = [*SCORE_STEP, "scheduler.warmup_ratio=0"]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}


def test_interval_matches_scipy_and_known_numbers():
    values = [1.0, 2.0, 3.0, 4.0, 5.0]
    result = estimate(values)
    assert result.n == 5 and result.mean == 3.0 and result.std == pytest.approx(math.sqrt(2.5))
    half_width = 2.7764451051977987 * math.sqrt(2.5) / math.sqrt(5)  # t(0.975, 4) from tables
    assert (result.low, result.high) == (pytest.approx(3 - half_width), pytest.approx(3 + half_width))
    low, high = stats.t.interval(0.95, 4, loc=3.0, scale=stats.sem(values))
    assert (result.low, result.high) == (pytest.approx(low), pytest.approx(high))
    assert estimate([0.5, 0.7]).high == pytest.approx(
        0.6 + 12.706204736174707 * statistics.stdev([0.5, 0.7]) / math.sqrt(2)
    )


def test_one_seed_has_no_spread_and_no_runs_no_mean():
    assert estimate([0.25]) == Estimate(1, 0.25)
    assert estimate([]) == Estimate(0)
    run = SeedRun(
        "only",
        ("seed=1",),
        1,
        {"evaluator": "similarity", "primary_metric": "m", "baseline": None, "finetuned": {"8": {"m": 0.5}}},
    )
    [group] = group_runs([run])
    assert group.label == "all runs"
    assert group.rows() == [["8", "1", "0.5000", "-", "-", "-", "-", "-"]]


def test_runs_are_grouped_by_configuration_apart_from_seed_and_identity():
    def run(name, *overrides):
        return SeedRun(
            name,
            overrides,
            None,
            {"evaluator": "e", "primary_metric": "m", "baseline": None, "finetuned": {"8": {"m": 0.1}}},
        )

    groups = group_runs(
        [
            run("a", "model=tiny", "loss=cosent", "seed=1", "sweep_trial={number:0}"),
            run("b", "model=tiny", "loss=angle", "seed=1"),
            run("c", "loss=cosent", "model=tiny", "seed=2", "paths.log_dir=/x"),
        ]
    )
    assert [(g.label, [r.name for r in g.runs]) for g in groups] == [
        ("loss=cosent", ["a", "c"]),
        ("loss=angle", ["b"]),
    ]


def _recomputed(runs: list[dict], dim: str) -> tuple[Estimate, Estimate]:
    """Fine-tuned primary metric and change at `dim`, recomputed here from the runs' results.json."""
    after = [r["finetuned"][dim][r["primary_metric"]] for r in runs]
    change = [a - r["baseline"][dim][r["primary_metric"]] for a, r in zip(after, runs)]
    out = []
    for values in (after, change):
        mean, std = statistics.fmean(values), statistics.stdev(values)
        half = stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
        out.append(Estimate(len(values), mean, std, mean - half, mean + half))
    return out[0], out[1]


@pytest.mark.slow
def test_multirun_of_seeds_is_summarised_in_its_folder_and_by_runs_compare(tmp_path, model_cache, capsys):
    command = [
        sys.executable,
        str(PROJECT_ROOT / "train.py"),
        "-m",
        "seed=1,2,3",
        *JOB,
        f"paths.log_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={model_cache}",
    ]
    result = subprocess.run(
        command, check=False, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    [folder] = (tmp_path / "outputs" / "default" / "multiruns").iterdir()
    runs = [json.loads(path.read_text()) for path in sorted(folder.glob("*/results.json"))]
    assert len(runs) == 3 and all(r["baseline"] for r in runs)

    summary = json.loads((folder / "summary.json").read_text())
    [group] = summary["groups"]
    assert group["seeds"] == [1, 2, 3] and group["primary_metric"] == ["spearman_cosine"]
    assert summary["confidence"] == 0.95 and list(group["dimensions"]) == ["32", "16", "8"]
    assert group["dimensions"]["32"]["change"]["std"] > 0  # the seeds' runs differ: a real spread
    markdown = (folder / "summary.md").read_text()
    assert runs_cli(["--db", str(tmp_path / "outputs" / "runs.db"), "compare", "--group", str(folder)]) == 0
    compared = capsys.readouterr().out
    assert runs_cli(["--db", str(tmp_path / "outputs" / "runs.db"), "compare", "--group", folder.name]) == 0
    assert capsys.readouterr().out == compared  # the folder by name selects the same group
    assert "seeds 1, 2, 3" in compared and "change 95% CI" in compared

    for dim in ("32", "16", "8"):
        after, change = _recomputed(runs, dim)
        for key, expected in (("finetuned", after), ("change", change)):
            stored = group["dimensions"][dim][key]
            assert stored["n"] == 3
            for name in ("mean", "std", "low", "high"):
                assert stored[name] == pytest.approx(getattr(expected, name), abs=1e-12)
        cells = [
            dim,
            "3",
            f"{after.mean:.4f}",
            f"{after.std:.4f}",
            f"[{after.low:.4f}, {after.high:.4f}]",
            f"{change.mean:+.4f}",
            f"{change.std:.4f}",
            f"[{change.low:+.4f}, {change.high:+.4f}]",
        ]
        assert "| " + " | ".join(cells) + " |" in markdown
        assert any(
            line.split() == [*cells[:4], *cells[4].split(), *cells[5:7], *cells[7].split()]
            for line in compared.splitlines()
        )
