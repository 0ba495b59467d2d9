"""What trains: the LightningModule, losses and loss modules, regularizers, several objectives, the teacher, early stopping and the step plan."""
