"""Models: the architecture registry over segmentation-models-pytorch, the model file, and the
torch device."""
