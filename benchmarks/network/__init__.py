"""Timing of the whole-network runtime: each op side by side with torch (``ops``).

``python -m benchmarks.network.ops --model resnet18`` prints the per-op-kind table of
``docs/network.md``; :func:`benchmarks.network.ops.op_timings` is the same from Python.
"""
