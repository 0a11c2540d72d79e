"""The wake service's lab: a sleep simulator users may run on purpose
(``hearth-sleepsim`` / ``python -m hearth_wake_lab.sleepsim``, a product of its own) and the
harness the wake tests and benchmarks share (:mod:`hearth_wake_lab.labtools`). Never
imported by ``hearth_wake``."""
