"""The TVM backend: a graph becomes a Relax module (emitters/, one module per op family), TVM fuses
it into kernels, CPU kernels get our schedules (schedules/), GPU kernels dlight's, and backend.py
builds and runs the result (`TVMExecutable`). targets.py resolves targets, ieee.py and
vector_math.py keep numpy's results for special values and the fast math functions accurate.
Imported only when a TVM target is compiled for (TVM takes ~0.7 s to import)."""
