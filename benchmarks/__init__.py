"""How well pattune does: the ``pattune bench ...`` commands and the test harnesses.

Benchmarks live outside the packages they measure (as Optuna's top-level
``benchmarks/``): ``accuracy`` (pruning accuracy of the example), ``kernels``
(generated kernels against torch/oneDNN, ONNX Runtime and sparse baselines),
``farm`` (SSH measurement overhead and scaling), ``search`` (kernel search
strategies replayed over a recorded measurement set); ``harness`` holds what
tests and benchmarks start for real (a private sshd, a link-delay proxy).
"""
