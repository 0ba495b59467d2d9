"""Hydra sweeper plugin: an Optuna study (Optuna 4+) run through Hydra's launcher (`hydra/sweeper=optuna`)."""
