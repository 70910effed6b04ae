"""Training machinery shared by every task: loop, checkpoints, EMA, distributed, logging."""
