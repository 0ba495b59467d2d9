"""The report's distillation section: the fine-tuned student against its teacher on each reported
evaluation, from `Teacher.to_json`'s results.json form."""

from embedding_trainer.reporting.results import markdown_table


def teacher_section(teacher: dict | None) -> list[str]:
    """Markdown lines of the `Student and teacher` section (none when the run had no teacher)."""
    if teacher is None:
        return []
    lines = ["## Student and teacher", ""]
    for label, compared in teacher.items():
        metric = compared["metric"]
        rows = [
            [
                dim,
                f"{values['teacher']:.4f}",
                f"{values['student']:.4f}",
                "n/a" if values["share"] is None else f"{values['share']:.1%}",
            ]
            for dim, values in compared["by_dimension"].items()
        ]
        lines += [
            f"{metric} on {label}: the teacher, and the fine-tuned student (its share of the teacher's).",
            "",
            markdown_table(["dimension", "teacher", "student", "student / teacher"], rows),
            "",
        ]
    return lines
