"""nanodet-ghost: a NanoDet-style detector with a GhostNet backbone.

The package root imports nothing heavy, so that `nanodet_ghost.inference.onnx_predictor`
can be used on a machine without torch.
"""

__version__ = "0.1.0"
