"""The code's shape limits (issue 28): small modules with one job, short functions, a thin package
root and a `train.py` that reads as the run's phases. A new module or function past a limit fails here."""

import ast
from pathlib import Path

from embedding_trainer.settings.resolvers import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "src" / "embedding_trainer"
SOURCES = sorted((PROJECT_ROOT / "src").rglob("*.py"))
MAX_MODULE_LINES = 350
MAX_FUNCTION_LINES = 80


def _lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_every_module_is_at_most_350_lines_and_train_py_at_most_150():
    too_long = {str(p.relative_to(PROJECT_ROOT)): _lines(p) for p in SOURCES if _lines(p) > MAX_MODULE_LINES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"
    assert _lines(PACKAGE / "train.py") <= 150


def test_every_function_is_at_most_80_lines():
    too_long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(
                        f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name} ({length} lines)"
                    )
    assert not too_long, f"functions over {MAX_FUNCTION_LINES} lines: {too_long}"


def test_the_package_root_holds_at_most_five_modules():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(modules) <= 5, modules


# Only these modules have functions that take the composed `DictConfig`; everything else takes typed
# settings built here. A new reader of the config belongs to one of these kinds (or is a mistake).
CONFIG_READERS = {
    "entry points": {
        "embedding_trainer/cli.py",
        "embedding_trainer/train.py",
        "embedding_trainer/evaluate.py",
        "embedding_trainer/serving/server.py",  # serve(cfg) and its ServeSettings.from_config
    },
    "Hydra plugins and factories (instantiate `_target_` nodes)": {
        "hydra_plugins/embedding_trainer_optuna_sweeper/_impl.py",
        "hydra_plugins/embedding_trainer_optuna_sweeper/optuna_sweeper.py",
        "embedding_trainer/runs/hydra_callback.py",
        "embedding_trainer/runs/queue.py",
        "embedding_trainer/phases/evaluation.py",
        "embedding_trainer/phases/fit.py",
        "embedding_trainer/training/losses.py",
        "embedding_trainer/training/regularizers.py",
    },
    "the settings edge (`from_config`, `*_settings`, `check_*` and the readers they use)": {
        *(f"embedding_trainer/settings/{p.name}" for p in (PACKAGE / "settings").glob("*.py")),
        *(f"embedding_trainer/data/stages/{p.name}" for p in (PACKAGE / "data" / "stages").glob("*.py")),
        "embedding_trainer/data/build.py",
        "embedding_trainer/data/settings.py",
        "embedding_trainer/data/hard_negatives.py",
        "embedding_trainer/data/synthetic_queries.py",
        "embedding_trainer/adapters/training.py",
        "embedding_trainer/models/settings.py",
        "embedding_trainer/models/lora.py",
        "embedding_trainer/phases/data.py",
        "embedding_trainer/phases/model.py",
        "embedding_trainer/runs/lifecycle.py",
        "embedding_trainer/runs/tracking.py",
        "embedding_trainer/training/early_stopping.py",
        "embedding_trainer/training/objectives.py",
        "embedding_trainer/training/relevance_mask.py",
        "embedding_trainer/training/teacher.py",
    },
}


def _takes_a_config(node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    arguments = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
    return any(a.annotation is not None and "DictConfig" in ast.unparse(a.annotation) for a in arguments)


def test_only_entry_points_factories_and_the_settings_edge_take_the_config():
    allowed = set().union(*CONFIG_READERS.values())
    readers = {
        str(path.relative_to(PROJECT_ROOT / "src"))
        for path in SOURCES
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and _takes_a_config(node)
    }
    assert not readers - allowed, (
        f"functions taking a DictConfig outside the edge: {sorted(readers - allowed)}"
    )
    assert not {p for p in allowed if not (PROJECT_ROOT / "src" / p).exists()}, "a listed module is gone"
