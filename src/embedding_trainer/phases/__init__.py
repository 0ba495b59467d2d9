"""A training run's phases, in the order `train._train` runs them; each takes typed values and returns a
typed result:

1. `data.check_settings`, `data.prepare_data`: the config checked before anything loads, the run's data
   module loaded (`RunData`: with each objective's part and the model's loader).
2. `evaluation.build_evaluations`: the evaluation that chooses the checkpoint, the held-out test, the
   forgetting guard, the health probe and the embedding cache (`Evaluations`).
3. `fit.build_training`: callbacks, loggers and the Lightning trainer, with the training plan's checks
   (`Training`).
4. `model.load_model`, `model.prepare_training_rows` (hard-negative mining, a teacher's targets) and
   `loss.build_module`: the model and its training loss in a LightningModule (`TrainingModule`).
5. `fit.fit`: the fit, on every rank this job runs.
6. `choose.choose_model`, `choose.score_chosen`: the kept checkpoint (`Chosen`) and its reported scores,
   guards and intervals (`Scores`).
7. `report.report_and_save`: results.json, the model folder with its card, the report, the hub upload
   and the checkpoints kept.
"""
