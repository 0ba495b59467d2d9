"""Config keys renamed so that each name has one meaning (issue 28): the old names still work for now.

Each old key stays in conf/train.yaml as an alias, `${<new key>}`, so it reads as the new key. A value
given to an old key (on the command line, in a sweep or in a config file) is moved to the new key by
`fold_renamed_keys`, which logs one deprecation line; an old and a new key given different values is a
ConfigError. A new key counts as given when it holds neither null nor its conf/train.yaml default (so
`debug=fdr evaluation.general=...` overrides the debug option's `forgetting_guard: null`, as before)."""

import functools

from omegaconf import DictConfig, OmegaConf

from embedding_trainer.settings.resolvers import CONFIG_DIR
from embedding_trainer.utils.errors import ConfigError
from embedding_trainer.utils.log import get_logger

log = get_logger(__name__)

RENAMED_KEYS = {  # old key -> new key
    "evaluation.objective.metric": "evaluation.selection_score.metric",
    "evaluation.objective.dims": "evaluation.selection_score.dims",
    "evaluation.general": "evaluation.forgetting_guard",
    "evaluation.general_max_drop": "evaluation.forgetting_max_drop",
}
_UNSET = object()


def alias(new_key: str) -> str:
    """The value an old key holds while it is not given: the interpolation of its new key."""
    return "${" + new_key + "}"


def fold_renamed_keys(cfg: DictConfig) -> None:
    """Move each old key's given value to its new key in `cfg` (in place) and set the old key back to
    its alias; log one deprecation line naming the new keys. Running it again changes nothing.

    Raises:
        ConfigError: an old key and its new key are both given, with different values.
    """
    used = []
    for old, new in RENAMED_KEYS.items():
        value = _raw(cfg, old)
        if value is _UNSET or value == alias(new):
            continue
        current = _raw(cfg, new)
        given = current not in (None, _shipped_default(new))
        if given and _resolved(cfg, old) != _resolved(cfg, new):
            raise ConfigError(
                f"{old} is the deprecated name of {new}, and the two are set to different values "
                f"({old}={value!r}, {new}={current!r}): keep {new}=<the value you mean> and remove {old}."
            )
        OmegaConf.update(cfg, new, value, merge=False)
        OmegaConf.update(cfg, old, alias(new), merge=False)
        used.append(f"{old} -> {new}")
    if used:
        log.warning(
            f"Deprecated config keys (they still work for now; use the new names): {', '.join(used)}."
        )


def _raw(cfg: DictConfig, key: str):
    """The value at `key` as written (interpolations unresolved); `_UNSET` when there is none."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, default=None)
    if not OmegaConf.is_dict(parent):
        return _UNSET
    return OmegaConf.to_container(parent, resolve=False).get(leaf, _UNSET)


def _resolved(cfg: DictConfig, key: str):
    """The value at `key`, resolved, as plain Python."""
    value = OmegaConf.select(cfg, key)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


@functools.cache
def _shipped_default(key: str):
    """The value conf/train.yaml gives `key`, as written."""
    return _raw(OmegaConf.load(CONFIG_DIR / "train.yaml"), key)
