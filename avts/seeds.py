"""Stable integers from names: seeds for random generators and ids, the same on every machine and run.

Python's ``hash`` changes between processes; these do not. Every seed AVTS derives (per sample, per epoch,
per rank, per evaluation draw) comes from :func:`stable_int` over the parts that identify it.
"""

from __future__ import annotations

import hashlib

import numpy as np


def stable_int(*parts: object) -> int:
    """A 63-bit non-negative integer determined by ``parts`` (joined as text with ``/``). Text from a file name
    that is not valid UTF-8 (undecodable bytes kept as surrogates) hashes its original bytes."""
    text = "/".join(str(part) for part in parts)
    digest = hashlib.blake2b(text.encode("utf-8", "surrogateescape"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def numpy_rng(*parts: object) -> np.random.Generator:
    """A numpy generator seeded by ``parts``."""
    return np.random.default_rng(stable_int(*parts))
