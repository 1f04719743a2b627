"""CPU schedules for the kernels of a fused Relax module: `rules.schedule_kernels` gives each kernel
the first rule of `rules.RULES` that fits; common.py holds fusion, the TIR pipeline, the matmul and
convolution schedules and the tools every rule shares, elementwise.py the reduction-free kernels'
and the reductions' schedules."""
