"""What a run leaves for people to read: results tables, report.md with plots, the model card."""
