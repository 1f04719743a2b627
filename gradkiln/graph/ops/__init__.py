"""Op definitions; importing this package fills the op table."""

from . import elementwise, nn, reduce, shape, sources
