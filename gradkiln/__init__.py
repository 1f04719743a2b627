"""gradkiln: a symbolic graph compiler for automatic differentiation.

Build a static graph with the define-and-run API, derive gradient graphs symbolically,
optimize, and compile with numpy or TVM; import and export ONNX; render with Graphviz.

The public names (`gradkiln/_api.py`) load on the first attribute read, as an eager import would
(every layer and rule table): importing them costs about 1.5 s of sympy, networkx, onnx and TVM,
which the `gradkiln` command must not pay to answer `--help` or `--version`.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api import *  # noqa: F403

from ._version import __version__

_lock = threading.RLock()  # a second thread waits for the first one's load
_loading: list[bool] = []  # non-empty while the public API imports


def _load() -> dict[str, Any]:
    """Import the public API into this module (once) and return the module's namespace. While
    `_api` imports, its `from . import onnx_io` probes this module: those lookups must fail
    (the import system then loads the submodule) instead of re-entering the load; another thread
    waits on the lock until the load is done."""
    namespace = globals()
    with _lock:
        if "__all__" not in namespace and not _loading:
            _loading.append(True)
            try:
                api = importlib.import_module("gradkiln._api")
            finally:
                _loading.clear()
            public = {k: v for k, v in vars(api).items() if not k.startswith("_")}
            namespace.update(public, __all__=sorted(public))
    return namespace


def __getattr__(name: str) -> Any:
    if name.startswith("_") and name != "__all__":
        raise AttributeError(f"module 'gradkiln' has no attribute {name!r}")
    namespace = _load()
    if name not in namespace:
        raise AttributeError(f"module 'gradkiln' has no attribute {name!r}")
    return namespace[name]


def __dir__() -> list[str]:
    return sorted(_load())
