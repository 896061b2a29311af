"""Training: hardware resolution, the step and loop, checkpoints, stage sequencing, run logging."""
