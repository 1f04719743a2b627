"""Op definitions; importing this package fills the op table."""

from . import autodiff, elementwise, nn, reduce, shape, sources
