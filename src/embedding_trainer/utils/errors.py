"""Error types for mistakes a user can fix by changing the configuration or the data."""


class ConfigError(ValueError):
    """The composed configuration cannot work; the message says what to change."""


class DataError(ValueError):
    """The data does not fit the dataset type; the message says what was found and how to fix it."""


class ModelLoadError(OSError):
    """The model could not be loaded; the message says where it was looked for and what to do."""


class ModelPushError(RuntimeError):
    """Uploading the saved model failed; the message says why and where the local copy is."""


class DiskFullError(OSError):
    """A write of the run failed for lack of space; the message names the path and what the run kept."""
