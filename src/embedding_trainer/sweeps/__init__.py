"""Optuna sweeps: the search space in Hydra's override grammar, study storage, and pruning inside a run.
The sweeper itself is the Hydra plugin `hydra_plugins.embedding_trainer_optuna_sweeper`."""
