"""Export of the trained stages to ONNX (and, on GPU hosts, TensorRT engines)."""
