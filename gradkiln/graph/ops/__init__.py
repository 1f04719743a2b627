"""Op definitions; importing this package fills the op table."""

from . import autodiff, dropout, elementwise, fused, linalg, nn, nn_ops, reduce, select, shape, sources
