"""Op definitions; importing this package fills the op table."""

from . import autodiff, elementwise, nn, nn_ops, reduce, shape, sources
