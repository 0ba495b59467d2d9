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
