"""Writes tests/data/io_python_writer.safetensors: checks our C++ reader against common.save."""
import numpy as np
from common import save

save("io_python_writer", {"x": np.array([[1, 2], [3, 4]], dtype=np.float32),
                          "n": np.array([5], dtype=np.int64)})
