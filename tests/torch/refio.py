"""refio.py - writes PyTorch reference fixtures for the C tests.

A fixture file is a sequence of named arrays, each record:
    u32 name length, name bytes (ASCII), u64 element count, count x float64 (LE)
Read by tests/refio.h. Integers (labels) are stored as float64 too; they are exact.
"""
import struct

import numpy as np


class RefWriter:
    def __init__(self, path):
        self.path = path
        self.records = []

    def add(self, name, array):
        a = np.asarray(array, dtype=np.float64).ravel()
        self.records.append((name, a))

    def close(self):
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            for name, a in self.records:
                nb = name.encode("ascii")
                f.write(struct.pack("<I", len(nb)))
                f.write(nb)
                f.write(struct.pack("<Q", a.size))
                f.write(a.astype("<f8").tobytes())
        import os
        os.replace(tmp, self.path)
