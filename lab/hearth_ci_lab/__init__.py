"""The ci service's lab: the Zuul/Gerrit replay server users may run on purpose
(``hearth-ci-replay`` / ``python -m hearth_ci_lab.replay``, a product of its own) and the
helpers the ci tests and benchmarks share (:mod:`hearth_ci_lab.harness`). Never imported by
``hearth_ci``."""
