"""numpy's BLAS thread pools, capped in every process that analyses images (workers, benchmarks).

Why: the analysis' numpy products (the car head's 8 x 1280 x 1000) are small, and OpenBLAS's idle threads spin
after each one, taking the cores from ONNX Runtime: `predict_regions` at batch 8, 2 threads, ran 6.9 ms per crop
uncapped and 5.4 ms capped at 1 (2026-12-07). Its own module so a benchmark caps them as a worker does without
importing the composition root (38 MB of imports).
"""

from __future__ import annotations

from typing import Final

BLAS_THREADS_DEFAULT: Final = 1
"""Settings' ``blas_threads`` default: more only spin."""


def cap_blas_threads(threads: int) -> None:
    """Cap every BLAS thread pool loaded in this process (numpy's and OpenCV's OpenBLAS) at ``threads``,
    process-wide and kept; 0 leaves them as they are. Call it after the models are loaded: they may load
    another OpenBLAS."""
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=threads, user_api="blas")
