"""Cross-package tests run the Triton kernels on CPU tensors in interpreter mode.

Triton reads TRITON_INTERPRET when it is imported, so it is set here, before any test module
imports fm_kernels (the nox ``cross`` session sets it too).
"""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
