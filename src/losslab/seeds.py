"""Derived seeds: every random stream of losslab gets its seed from one helper.

A stream is named by a base seed and a few keys, for example ``derive_seed(seed, "data-order")``
for the order of minibatches of the endpoint trained with ``seed``, or
``derive_seed(seed, "spawn", 2)`` for copy 2 spawned from that run. The result is a stable
hash of the base and the keys (SHA-256 of their JSON text), so it is the same on every
machine and Python version, and streams with different keys are independent for practical
purposes (no ``seed + 7919`` offsets that collide when seeds are consecutive).

torch-free: the run plan may derive seeds without importing torch.
"""
from __future__ import annotations

import hashlib
import json
import operator

SEED_BITS = 63  # fits torch.Generator.manual_seed, numpy and Python's random


def derive_seed(base: int, *keys: int | str) -> int:
    """A seed in ``[0, 2**63)`` for the stream named ``keys`` under the seed ``base``.

    ``keys`` are strings or integers (``1`` and ``"1"`` name different streams); the result
    depends only on ``base`` and ``keys``, in order. Raises ``TypeError`` for a base that is not
    an integer and for keys of any other type (floats and bools are refused: ``1.0``, ``True``
    and ``1`` would otherwise be easy to confuse).
    """
    parts = [_as_key(base, integer=True)] + [_as_key(k) for k in keys]
    digest = hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - SEED_BITS)


def _as_key(value, integer: bool = False) -> int | str:
    """``value`` as a plain int (anything with ``__index__``, such as numpy integers) or str."""
    if isinstance(value, str) and not integer:
        return value
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    allowed = "an integer" if integer else "an integer or a string"
    raise TypeError(f"derive_seed: {value!r} is not {allowed}")
