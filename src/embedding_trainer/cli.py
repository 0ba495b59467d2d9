"""The command lines `train.py` and `evaluate.py` (and the console scripts `embedding-train`,
`embedding-evaluate`): Hydra entry points that import only Hydra and OmegaConf, so that what runs no
job (`--help`, `--cfg job`, `--cfg hydra`, `--info`) answers in a second or two. The job modules
(Lightning, torch, sentence-transformers) are imported inside the entry functions, when a job runs.

`--help` prints `hydra.help.template` (`conf/hydra/help/`), whose list of config groups and options
comes from the config tree itself: the resolver `${help_groups:choices}` (`help_groups`) takes every
option's description from its YAML file's header comment (`option_description`).
"""

import re
import sys
from collections import defaultdict
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from embedding_trainer.settings.resolvers import CONFIG_DIR, register_resolvers

HELP_WIDTH = 120  # characters of one option's line in --help; a longer description is cut with "..."
_SENTENCE_END = re.compile(r"(?<!e\.g)(?<!i\.e)[.!?](?=\s|$)")


def option_description(path: Path) -> str:
    """The first sentence of a config file's header: its comment lines before the first key (a
    `# @package` line skipped), joined; "" when the file starts with no comment."""
    header = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if not line.startswith("# @package"):
            header.append(line.lstrip("#").strip())
    text = " ".join(header)
    end = _SENTENCE_END.search(text)
    return text[: end.end()] if end else text


def config_groups() -> dict[str, list[Path]]:
    """The config groups under `conf/` (Hydra's own, `hydra/...`, left out), named as on the command
    line (`model/lora`), each with its option files in name order. Internal groups and options, named
    with a leading underscore (`data/_common`), are left out, and so are folders without options."""
    groups = {}
    for folder in sorted(path for path in CONFIG_DIR.rglob("*") if path.is_dir()):
        parts = folder.relative_to(CONFIG_DIR).parts
        options = sorted(path for path in folder.glob("*.yaml") if not path.name.startswith("_"))
        if parts[0] != "hydra" and not any(part.startswith("_") for part in parts) and options:
            groups["/".join(parts)] = options
    return groups


def chosen_options(choices) -> dict[str, set[str]]:
    """`hydra.runtime.choices` (`group` or `group@package` -> an option or None) as group -> the
    options chosen for it in any package (Hydra records no list of options, as `objectives=[a,b]`)."""
    chosen = defaultdict(set)
    for key, choice in (choices or {}).items():
        if choice is not None:
            chosen[key.split("@")[0]].add(str(choice))
    return chosen


def help_groups(choices=None) -> str:
    """`config_groups()` for `--help`: each group's name, then one line per option: `*` where `choices`
    (`hydra.runtime.choices`) picks it, its name and its `option_description`, the line cut to
    `HELP_WIDTH`. `$` is doubled: Hydra fills the help template with `string.Template`."""
    chosen_by_group = chosen_options(choices)
    lines = []
    for group, options in config_groups().items():
        chosen = chosen_by_group[group]
        width = max(len(path.stem) for path in options)
        lines.append(group)
        for path in options:
            line = f"  {'*' if path.stem in chosen else ' '} {path.stem:<{width}}  {option_description(path)}"
            lines.append(
                line if len(line) <= HELP_WIDTH else line[: HELP_WIDTH - 3].rsplit(" ", 1)[0] + " ..."
            )
    return "\n".join(lines).replace("$", "$$")


register_resolvers()  # before Hydra composes the config
if not OmegaConf.has_resolver("help_groups"):
    OmegaConf.register_new_resolver("help_groups", help_groups)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="train")
def train_main(cfg: DictConfig) -> float:
    """`python train.py`: train on the composed config; returns `val/score` for sweepers. A mistake
    in the config, the data or the model name ends the run with its message and exit status 2,
    without a traceback (in a multi-run or sweep it is raised: Hydra records that job as failed and
    runs the others); a preempted run (SIGUSR1/SIGTERM) saves a checkpoint and exits with 128 + the
    signal number (`embedding_trainer.runs.lifecycle.run_command`)."""
    from embedding_trainer.runs.lifecycle import run_command
    from embedding_trainer.train import train

    return run_command(lambda: train(cfg))["val/score"]


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="evaluate")
def evaluate_main(cfg: DictConfig) -> float:
    """`python evaluate.py`: evaluate the composed config's model without training; returns
    `val/score`. Mistakes end the run as `train_main`'s do (the message, exit status 2)."""
    from embedding_trainer.evaluate import evaluate
    from embedding_trainer.runs.lifecycle import run_command

    return run_command(lambda: evaluate(cfg))["val/score"]


def model_path_overrides(argv: list[str]) -> list[str]:
    """`argv` with `model=<X>`, where X is not an option of conf/model/ (a folder or a hub id), read as
    `model=local model.name_or_path=<X>`; every other argument unchanged."""
    options = {path.stem for path in (CONFIG_DIR / "model").glob("*.yaml")}
    rewritten = []
    for argument in argv:
        key, _, value = argument.partition("=")
        if key == "model" and value and value not in options:
            rewritten += ["model=local", f"model.name_or_path={value}"]
        else:
            rewritten.append(argument)
    return rewritten


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="serve")
def _serve(cfg: DictConfig) -> None:
    from embedding_trainer.runs.lifecycle import run_command
    from embedding_trainer.serving.server import serve

    def job() -> tuple[dict, dict]:
        serve(cfg)  # until interrupted
        return {}, {}

    run_command(job)


def serve_main() -> None:
    """`python serve.py`: serve the composed config's model as an OpenAI-compatible embeddings endpoint
    until interrupted (`embedding_trainer.serving`); `model=<a folder or a hub id>` stands for
    `model=local model.name_or_path=<it>`. Mistakes end it as `train_main`'s do (the message, exit status 2)."""
    sys.argv[1:] = model_path_overrides(sys.argv[1:])
    _serve()
