"""Export of trained detectors (ONNX with self-describing metadata)."""
