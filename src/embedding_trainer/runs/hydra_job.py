"""What Hydra says about the running job."""

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode


def in_multirun() -> bool:
    """True in a job of a Hydra multi-run or sweep (`-m`); False in a single run and in a config
    composed outside Hydra's command line (tests, scripts)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
