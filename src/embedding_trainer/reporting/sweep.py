"""Sweep reports: each searched parameter against the objective, and the best trial, from an Optuna study."""

from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from embedding_trainer.reporting.plots import DPI, FIGURE_SIZE, plt, save_figure


def plot_study(study: optuna.Study, path: Path) -> Path:
    """One panel per parameter: the objective of every completed trial against that parameter's
    value (log axis for log-scale distributions, category positions for choices), best trial starred."""
    trials = [trial for trial in study.trials if trial.state == optuna.trial.TrialState.COMPLETE]
    if not trials:
        raise ValueError(f"Study {study.study_name!r} has no completed trial to plot.")
    names = sorted({name for trial in trials for name in trial.params})
    figure, axes = plt.subplots(
        1, max(len(names), 1), figsize=FIGURE_SIZE, dpi=DPI, sharey=True, squeeze=False
    )
    best = study.best_trial
    for axes_, name in zip(axes[0], names):
        distribution = next(t.distributions[name] for t in trials if name in t.distributions)
        used = [t for t in trials if name in t.params]
        if isinstance(distribution, CategoricalDistribution):
            labels = [str(choice) for choice in distribution.choices]
            position = {label: index for index, label in enumerate(labels)}
            xs = [position[str(t.params[name])] for t in used]
            best_x = position.get(str(best.params.get(name)))
            axes_.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
        else:
            xs = [t.params[name] for t in used]
            best_x = best.params.get(name)
            if isinstance(distribution, (FloatDistribution, IntDistribution)) and distribution.log:
                axes_.set_xscale("log")
        axes_.scatter(xs, [t.value for t in used], color="tab:blue", alpha=0.7, label="trial")
        if best_x is not None:
            axes_.scatter(
                [best_x], [best.value], marker="*", s=250, color="tab:red", label=f"best (#{best.number})"
            )
        axes_.set_xlabel(name)
        axes_.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"objective ({study.direction.name.lower()})")
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"Sweep {study.study_name}: {len(trials)} completed trials")
    return save_figure(figure, path)


def objective_text(study: optuna.Study) -> str:
    """What the trials' objective (`val/score`) is, from the `objective` each run recorded in its trial;
    says so when trials recorded different ones."""
    stated = sorted(
        {trial.user_attrs["objective"] for trial in study.trials if "objective" in trial.user_attrs}
    )
    if not stated:
        return "val/score (not recorded by the trials)"
    if len(stated) == 1:
        return f"val/score = {stated[0]}"
    return "val/score, which differed between trials (their values do not compare): " + "; ".join(stated)


def write_sweep_report(study: optuna.Study, output_dir: Path) -> Path:
    """`sweep.md` (what the objective is; every trial: number, state, parameters, objective; the best
    trial) and `plots/sweep.png` in `output_dir`."""
    plot_study(study, output_dir / "plots" / "sweep.png")
    best = study.best_trial
    names = sorted({name for trial in study.trials for name in trial.params})
    lines = [
        f"# Sweep report: {study.study_name}",
        "",
        f"Objective ({study.direction.name.lower()}): {objective_text(study)}.",
        "",
        f"Best trial #{best.number}: objective {best.value:.4f} ({study.direction.name.lower()}) with "
        + ", ".join(f"{name}={value}" for name, value in best.params.items())
        + (f"; model at {best.user_attrs['model_path']}" if "model_path" in best.user_attrs else ""),
        "",
        "| trial | state | " + " | ".join(names) + " | objective |",
        "|---|---|" + "---|" * len(names) + "---|",
    ]
    for trial in study.trials:
        values = " | ".join(str(trial.params.get(name, "-")) for name in names)
        objective = "-" if trial.value is None else f"{trial.value:.4f}"
        lines.append(f"| {trial.number} | {trial.state.name.lower()} | {values} | {objective} |")
    lines += ["", "![Parameters against the objective](plots/sweep.png)"]
    path = output_dir / "sweep.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
