"""Device choice and per-job runtime setup (threads, logging, progress).

Nothing here imports torch at module level: jobs that only handle tables and figures start
without it.
"""
from __future__ import annotations

import logging
import os
import sys


def get_device(preference: str = "auto") -> "torch.device":  # noqa: F821
    """``auto`` picks CUDA when present, else the CPU. Never hard-codes CUDA."""
    import torch

    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if preference.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"compute.device is {preference!r} but no CUDA device is available")
    return torch.device(preference)


def setup_job(log_path: str | None, threads: int = 1, level=logging.INFO) -> logging.Logger:
    """Send log lines and warnings of a job to its log file and pin the thread count.

    Progress bars (tqdm) write to ``sys.stderr``, which is redirected to the same file.
    """
    n = max(1, int(threads))
    os.environ["OMP_NUM_THREADS"] = str(n)  # a torch imported later starts with n threads
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    logger = logging.getLogger("losslab")
    logger.handlers.clear()
    logger.setLevel(level)
    if log_path:
        stream = open(log_path, "a", buffering=1)
        sys.stderr = stream
    else:
        stream = sys.stderr
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger.addHandler(handler)
    logging.captureWarnings(True)
    if log_path:
        # A job that fails writes the reason into its own log too (on a cluster that log is
        # where users look), then lets Python print the traceback as usual.
        previous = sys.excepthook

        def log_failure(kind, exc, tb):
            logger.error("job failed: %s: %s", kind.__name__, exc)
            previous(kind, exc, tb)

        sys.excepthook = log_failure
    return logger
