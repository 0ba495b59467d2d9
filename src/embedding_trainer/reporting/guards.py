"""The report's checks beyond the run's own metric: the general evaluation (did anything else get
worse?) and the embedding health (did the embeddings collapse?), from their results.json forms."""

from embedding_trainer.reporting.results import markdown_table, primary_table

HEALTH_METRICS = ("alignment", "uniformity", "mean_cosine", "effective_rank")


def guard_warnings(general: dict | None, health: dict | None) -> list[str]:
    """Warning lines for the top of the report (empty when nothing warned)."""
    warnings = []
    if general and general["warning"]:
        warnings.append(f"> **Warning:** {general['warning']}")
    if health and health["warnings"]:
        warnings.append(
            f"> **Warning:** possible embedding collapse ({len(health['warnings'])} warning(s); see Embedding health)."
        )
    return warnings


def guard_sections(general: dict | None, health: dict | None) -> list[str]:
    """Markdown lines of the `General evaluation` and `Embedding health` sections (`GeneralEvaluation.to_json`
    and `EmbeddingHealthCallback.to_json`; None: not run)."""
    lines = ["## General evaluation (forgetting guard)", ""]
    if general is None:
        lines.append(
            "Not run: evaluation.forgetting_guard is null, or the run's own evaluation is already on that set."
        )
    else:
        metric = general["primary_metric"]
        lines += [
            (
                f"{metric} of the {general['evaluator']} evaluation on {general['data']}, before and after training; "
                f"a drop of more than {general['max_drop']} at any dimension warns."
            ),
            "",
            primary_table(metric, general["baseline"], general["finetuned"]),
        ]
    lines += ["", "## Embedding health", ""]
    if health is None:
        lines.append("Not measured (evaluation.health is null, or no probe texts).")
        return lines
    probe = health["probe"]
    pairs = f", {probe['pairs']} positive pairs" if probe["pairs"] else ", no positive pairs (no alignment)"
    lines += [
        (
            f"Probe: {probe['texts']} texts of the {probe['source']}{pairs}; measured before training and at every "
            f"evaluation (logged as health/<metric>_dim<d>). A spread (-uniformity) or effective rank below "
            f"{health['min_fraction']} x its value before training warns. Alignment: lower is closer positives; "
            "uniformity: lower is more uniform."
        ),
        "",
    ]
    before, final = health["baseline"] or {}, health["final"] or {}
    rows = []
    for dim in final or before:
        for name in HEALTH_METRICS:
            then, now = before.get(dim, {}).get(name), final.get(dim, {}).get(name)
            if then is not None or now is not None:
                change = now - then if then is not None and now is not None else None
                rows.append([dim, name, then, now, change])
    lines.append(markdown_table(["dimension", "metric", "before training", "final", "change"], rows))
    if health["warnings"]:
        lines += ["", *(f"- {warning}" for warning in health["warnings"])]
    return lines
