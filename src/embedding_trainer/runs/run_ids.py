"""The one id of a run: the name of its run folder, and how a user's words find a run again.

A run folder is `<timestamp>_<token>` (`conf/hydra/default.yaml`): a single run's id is that name; a
multi-run or sweep member's folder `<n>_<overrides>` inside `<timestamp>_<token>/` has the id
`<timestamp>_<token>_<n>`. A folder that carries no token (a pinned `hydra.run.dir`, a sweep folder
named after its study) gets a new id of the same shape (`new_run_id`). Which one a run takes (a
resumed run keeps its stored id) is `tracking.run_id_for`'s decision.
"""

import re
import secrets
import time
from pathlib import Path

from embedding_trainer.runs.registry import RunRegistry

STAMP = "%Y-%m-%d_%H-%M-%S"
TOKENED = re.compile(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}_[0-9a-f]{6}")
MEMBER = re.compile(r"(\d+)_")


class RunNotFound(KeyError):
    """No run, or more than one, answers to what the user typed; `args[0]` is the one-line message."""


def new_run_id() -> str:
    """A fresh id shaped like a run folder's name: the time now and 6 random hex digits."""
    return f"{time.strftime(STAMP)}_{secrets.token_hex(3)}"


def folder_run_id(folder: str | Path) -> str | None:
    """The id `folder`'s path carries: its name when that is `<timestamp>_<token>`; for a member
    `<n>_...` of such a multi-run folder, `<timestamp>_<token>_<n>`; else None."""
    path = Path(folder)
    if TOKENED.fullmatch(path.name):
        return path.name
    member = MEMBER.match(path.name)
    if member and TOKENED.fullmatch(path.parent.name):
        return f"{path.parent.name}_{member.group(1)}"
    return None


def find_run(registry: RunRegistry, reference: str, cwd: Path | None = None) -> str:
    """The id of the one run `reference` names: an id, a run folder (a path, relative to `cwd`, or a
    folder's name), or the start of one id.

    Raises:
        RunNotFound: nothing matches, or several runs do (the message lists them).
    """
    known = registry.references()
    if reference in known:
        return reference
    wanted = ((cwd or Path.cwd()) / Path(reference).expanduser()).resolve()
    bare_name = len(Path(reference).parts) == 1
    matches = [
        run_id
        for run_id, folder in known.items()
        if run_id.startswith(reference)
        or (
            folder
            and (
                Path(folder).resolve() == wanted or (bare_name and Path(folder).name == Path(reference).name)
            )
        )
    ]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise RunNotFound(
            f"No run {reference!r} in {registry.path}: give a run id (or its start) or a run folder; "
            "`python -m embedding_trainer.runs list` shows them."
        )
    shown = ", ".join(f"{run_id} ({known[run_id] or 'no folder'})" for run_id in matches[:10])
    more = f" and {len(matches) - 10} more" if len(matches) > 10 else ""
    raise RunNotFound(f"{reference!r} matches {len(matches)} runs, type more of one: {shown}{more}.")
