"""Run the kernels wherever the tests run: compiled on a CUDA machine, interpreted on a CPU one.

Triton reads TRITON_INTERPRET when it is imported, so this must run before any test module
imports fm_kernels; a conftest does. An explicit TRITON_INTERPRET in the environment wins.
"""

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
