"""The numpy reference executor: `NumpyExecutable` (backend.py) runs a graph node by node with each
op's numpy reference, large elementwise chains in cache-sized blocks (kernels.py)."""
