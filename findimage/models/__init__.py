"""What the models compute (CLIP embedders) and how the process runs them (runtime)."""
