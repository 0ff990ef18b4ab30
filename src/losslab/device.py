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


def setup_job(log_path: str | None, threads: int = 1, config: dict | None = None, level=logging.INFO) -> logging.Logger:
    """Send a job's log lines and warnings to its log file, cap its threads, apply job settings.

    Thread caps: Snakemake starts every script job with ``OMP_NUM_THREADS`` (and the MKL/OpenBLAS
    equivalents) set to the rule's threads, so numpy and torch load capped; this also caps
    torch's pool when torch is loaded. ``config`` (the workflow's config) sets the BatchNorm
    recompute batch (``evaluation.bn_batch``, read by :func:`losslab.flat.bn_batch`). Progress
    bars never go to the log (see :func:`progress_bar`): the log gets one line per step.
    """
    n = max(1, int(threads))
    os.environ.setdefault("OMP_NUM_THREADS", str(n))
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)
    if config is not None:
        os.environ["LOSSLAB_BN_BATCH"] = str(config["evaluation"]["bn_batch"])
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
    logger.info("job threads %d (OMP_NUM_THREADS=%s)", n, os.environ.get("OMP_NUM_THREADS"))
    if log_path:
        # A job that fails writes the reason into its own log too (on a cluster that log is
        # where users look), then lets Python print the traceback as usual.
        previous = sys.excepthook

        def log_failure(kind, exc, tb):
            logger.error("job failed: %s: %s", kind.__name__, exc)
            previous(kind, exc, tb)

        sys.excepthook = log_failure
    return logger


def progress_bar(iterable, enabled: bool = True, **kwargs):
    """``iterable`` with a tqdm bar on a terminal only: in a job, whose stderr is its log file,
    no bar is drawn, so no progress fragment is ever glued onto a log line."""
    from tqdm import tqdm

    return tqdm(iterable, disable=not (enabled and sys.stderr.isatty()), mininterval=2.0, ascii=True, **kwargs)
