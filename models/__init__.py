"""PyTorch definitions of the SPACE stages (training and export only; the server needs no torch).

Every stage has a full-sequence ``forward`` (training, offline parity reference) and a
``step`` module whose recurrent state (LSTM h/c, conv caches) is explicit input and output,
which is what gets exported to ONNX and run frame by frame.
"""
