"""Training data and loop helpers: windows and their split, augmentation, targets and losses,
the training state and checkpoint, and the report."""
