"""A file's whole-content hash: byte-identical copies share a vector (indexer/copies.py) and
form `duplicates --kind exact` groups; one function, so the stored `content_hash` column
compares with whatever is computed later."""

from __future__ import annotations

import hashlib


def content_hash(path: str) -> str:
    """blake2b-256 of the whole file, hex; OSError when it cannot be read."""
    digest = hashlib.blake2b(digest_size=32)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
