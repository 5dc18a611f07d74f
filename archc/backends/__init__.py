"""The back-ends: PyTorch source (`torch/`), ONNX (`onnx/`) and the weights both carry (`weights`)."""

# How every message that needs torch says to install it: as the README does, torch
# pinned first (unpinned, pip pulls a multi-GB CUDA build), then archc's extra.
TORCH_VERSION = "2.13.0"
TORCH_INSTALL = "pip install torch==2.13.0 && pip install 'archc[torch]'"  # TORCH_VERSION, spelt out
