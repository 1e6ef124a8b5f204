"""Helpers for the scripts that write the PyTorch reference fixtures of the C tests.

Run the generators with Debian's Python (python3-torch, python3-h5py):
    /usr/bin/python3 tools/gen_fixtures_<area>.py
They write tests/fixtures/<area>.h5, which is committed: the tests never need Python.
"""
import os

import h5py
import numpy as np
import torch

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def open_fixture(name):
    """A new HDF5 file tests/fixtures/<name> (overwritten)."""
    os.makedirs(FIXTURES, exist_ok=True)
    return h5py.File(os.path.join(FIXTURES, name), "w")


def put(h5, path, value):
    """Stores a tensor/array/number at path: floats as float32 unless already float64,
    integers as int64."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    value = np.asarray(value)
    if value.dtype.kind == "f" and value.dtype != np.float64:
        value = value.astype(np.float32)
    elif value.dtype.kind in "iub":
        value = value.astype(np.int64)
    h5.create_dataset(path, data=value)
