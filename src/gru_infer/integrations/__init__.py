"""Thin helpers for running gru_infer models on Ray Data and Dask.

Neither framework is imported until its helper module is: `import gru_infer`
never needs them.  Install with `pip install "gru_infer[scale]"`.
"""
