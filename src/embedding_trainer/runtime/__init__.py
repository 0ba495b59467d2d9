"""A run's life outside training proper: claiming its folder, DDP rank launches, preemption and resuming."""
