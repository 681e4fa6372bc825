"""``siamlab bench``: siamlab's training step next to a plain reference SimSiam loop.

:mod:`~siamlab.bench.reference` is the yardstick (the authors' minimal loop),
:mod:`~siamlab.bench.measure` the timing primitives (interleaved blocks, FLOP counts,
matmul peak) and :mod:`~siamlab.bench.runner` puts them together for one run config.
"""
