"""The count products, one class per backend: labels (rows x tokens, 0/1) @ one-hot bins.

Every backend computes the same exact integer counts:

* ``numpy-float32``: numpy's float32 matrix product (BLAS);
* ``torch-float32``: torch's float32 matrix product on the CPU;
* ``torch-int8``: torch's int8 x int8 -> int32 product (``torch._int_mm``);
* ``cuda``: torch's float32 matrix product on a CUDA device.

The float32 products are exact because both operands hold only 0 and 1 (exact
in float32, and in the TF32 format a GPU may use for float32 inputs), every
product of two of them is 0 or 1, and a float32 sum of non-negative integers is
exact while it stays at most 2^24: the caller never multiplies more than
:data:`lamina.backends.counts.TILE_TOKENS` tokens at once, so no count of one
product can exceed that, and it sums the products of successive token ranges in
int64. The int8 product accumulates in int32, exact below 2^31.

torch is imported only inside the torch backends, when one is used.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

#: The names of the backends, in the order calibration reports them.
NAMES = ("numpy-float32", "torch-float32", "torch-int8", "cuda")

_PROBES: dict[str, bool] = {}


class NumpyFloat32:
    """numpy's float32 BLAS product.

    A one-hot matrix lives in a flat buffer (:meth:`zeros`) whose entries are set
    by flat index (:meth:`put`) and read as a (tokens, width) matrix of its first
    entries (:meth:`matrix`), so one buffer serves every tile and group.
    """

    name = "numpy-float32"
    dtype: Any = np.float32
    itemsize = 4

    def zeros(self, size: int) -> Any:
        return np.zeros(size, dtype=self.dtype)

    def put(self, buffer: Any, flat_index: np.ndarray, value: int) -> None:
        buffer[flat_index] = value

    def matrix(self, buffer: Any, rows: int, width: int) -> Any:
        return buffer[: rows * width].reshape(rows, width)

    def labels(self, block: np.ndarray) -> Any:
        return block.astype(np.float32)

    def multiply(self, labels: Any, one_hot: Any) -> Any:
        return np.matmul(labels, one_hot).astype(np.int64)

    def to_numpy(self, counts: Any) -> np.ndarray:
        return counts


class TorchFloat32(NumpyFloat32):
    """torch's float32 product on the CPU (its own BLAS and threads), on numpy's buffers."""

    name = "torch-float32"

    def __init__(self) -> None:
        import torch

        self.torch = torch

    def matrix(self, buffer: Any, rows: int, width: int) -> Any:
        return self.torch.from_numpy(buffer[: rows * width].reshape(rows, width))

    def labels(self, block: np.ndarray) -> Any:
        return self.torch.from_numpy(block.astype(np.float32))

    def multiply(self, labels: Any, one_hot: Any) -> Any:
        return self.torch.mm(labels, one_hot).numpy().astype(np.int64)


class TorchInt8(TorchFloat32):
    """torch's int8 x int8 -> int32 product on the CPU."""

    name = "torch-int8"
    dtype = np.int8
    itemsize = 1

    def labels(self, block: np.ndarray) -> Any:
        return self.torch.from_numpy(_c_order(block).view(np.int8))

    def multiply(self, labels: Any, one_hot: Any) -> Any:
        return self.torch._int_mm(labels, one_hot).numpy().astype(np.int64)


class TorchDevice(NumpyFloat32):
    """torch's float32 product on a device (``cuda``): one-hot kept there, counts summed there."""

    name = "cuda"

    def __init__(self, device: str = "cuda") -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)

    def zeros(self, size: int) -> Any:
        return self.torch.zeros(size, dtype=self.torch.float32, device=self.device)

    def put(self, buffer: Any, flat_index: np.ndarray, value: int) -> None:
        buffer[self.torch.from_numpy(flat_index).to(self.device)] = value

    def matrix(self, buffer: Any, rows: int, width: int) -> Any:
        return buffer[: rows * width].view(rows, width)

    def labels(self, block: np.ndarray) -> Any:
        host = self.torch.from_numpy(_c_order(block).view(np.uint8))
        return host.to(self.device).to(self.torch.float32)

    def multiply(self, labels: Any, one_hot: Any) -> Any:
        return self.torch.mm(labels, one_hot).to(self.torch.int64)

    def to_numpy(self, counts: Any) -> np.ndarray:
        return counts.cpu().numpy()


def _c_order(block: np.ndarray) -> np.ndarray:
    """``block`` with plain C strides (torch._int_mm misreads e.g. the zero stride of x[None])."""
    if block.strides != (block.shape[1] * block.itemsize, block.itemsize):
        return np.array(block, order="C")
    return block


def torch_int_mm_available() -> bool:
    """Whether torch's int8 product runs on this CPU and gives exact counts (probed once)."""
    return available("torch-int8")


def available(name: str) -> bool:
    """Whether backend ``name`` can run here (imports torch for the torch backends; cached)."""
    if name == "numpy-float32":
        return True
    if name not in _PROBES:
        _PROBES[name] = _probe(name)
    return _PROBES[name]


def _probe(name: str) -> bool:
    try:
        import torch
    except ImportError:
        return False
    try:
        if name == "cuda" and not torch.cuda.is_available():
            return False
        product = make_product(name)
        buffer = product.zeros(6)
        product.put(buffer, np.array([0, 3, 5]), 1)  # one-hot of bins 0, 1, 1
        block = np.array([[True, False, True], [False, True, True]])
        got = product.to_numpy(
            product.multiply(product.labels(block), product.matrix(buffer, 3, 2))
        )
        return got.tolist() == [[1, 1], [0, 2]]
    except Exception:  # any failure (no kernel for this CPU, no driver) means: not here
        return False


def make_product(name: str) -> Any:
    """The product object of backend ``name`` (availability is the caller's check)."""
    if name == "numpy-float32":
        return NumpyFloat32()
    if name == "torch-float32":
        return TorchFloat32()
    if name == "torch-int8":
        return TorchInt8()
    if name == "cuda":
        return TorchDevice("cuda")
    raise ValueError(f"unknown count backend {name!r}")


def torch_imported() -> bool:
    """Whether torch is already imported in this process (then using it costs nothing more)."""
    return "torch" in sys.modules
