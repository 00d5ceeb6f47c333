"""``pattune bench kernels``: tuned pattern kernels against dense and sparse baselines."""
