"""Read one entry back from a tile-based log (C2SP ``tlog-tiles``), with its RFC 6962 inclusion proof.

Rekor v2 answers an upload of an entry it already holds with HTTP 409 and the entry's index, and
has no API to fetch an entry. chainmail's ECDSA signatures are deterministic (RFC 6979), so signing
a run again logs the same entries: :class:`TileReader` rebuilds what the upload would have returned
from the log's public read API:

- ``/api/v2/tile/<L>/<N>[.p/<W>]``: level-``L`` tiles, 256 hashes of height-``8L`` subtrees each
  (``.p/<W>``: the rightmost, partial tile of width ``W``);
- ``/api/v2/tile/entries/<N>[.p/<W>]``: entry bundles, 256 entries each, every entry a big-endian
  uint16 length and its bytes.

``<N>`` is the tile index in zero-padded groups of three digits, all but the last prefixed with
``x`` (``1234067`` → ``x001/x234/067``). Nothing read here is trusted: the caller checks the proof
against a checkpoint whose signature it verified.

Example::

    tiles = TileReader(get, size=checkpoint.size)   # get("tile/0/000") -> bytes
    body = tiles.entry(index)
    proof = tiles.inclusion_proof(index)
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from chainmail.errors import TransparencyError

WIDTH = 256
HASH_SIZE = 32


def tile_index_path(n: int) -> str:
    """``n`` as a tile path: groups of three digits, ``x`` before every group but the last."""
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join([f"x{g}" for g in groups[:-1]] + [groups[-1]])


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (RFC 6962's ``k``)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


class TileReader:
    """Hashes and entries of a tree of ``size`` leaves, fetched tile by tile through ``get``."""

    def __init__(self, get: Callable[[str], bytes], size: int) -> None:
        self.get = get
        self.size = size
        self._tiles: dict[tuple[int, int], bytes] = {}

    def _width(self, count: int, tile: int) -> int:
        return min(WIDTH, count - tile * WIDTH)

    def _suffix(self, count: int, tile: int) -> str:
        width = self._width(count, tile)
        if width <= 0:
            raise TransparencyError(f"tile {tile} is beyond the tree of size {self.size}")
        return "" if width == WIDTH else f".p/{width}"

    def tile(self, level: int, tile: int) -> bytes:
        """The hashes of tile ``tile`` at ``level`` (cached)."""
        key = (level, tile)
        if key not in self._tiles:
            count = self.size >> (8 * level)
            data = self.get(f"tile/{level}/{tile_index_path(tile)}{self._suffix(count, tile)}")
            if len(data) != self._width(count, tile) * HASH_SIZE:
                raise TransparencyError(f"tile {level}/{tile}: {len(data)} bytes, expected "
                                        f"{self._width(count, tile) * HASH_SIZE}")
            self._tiles[key] = data
        return self._tiles[key]

    def node(self, height: int, index: int) -> bytes:
        """The hash of the complete subtree of ``2**height`` leaves starting at leaf ``index << height``."""
        level, rest = divmod(height, 8)
        first, count = index << rest, 1 << rest
        data = self.tile(level, first // WIDTH)
        offset = first % WIDTH
        hashes = [data[(offset + i) * HASH_SIZE:(offset + i + 1) * HASH_SIZE] for i in range(count)]
        if any(len(h) != HASH_SIZE for h in hashes):
            raise TransparencyError(f"tile {level}/{first // WIDTH} is too short for node {height}/{index}")
        while len(hashes) > 1:
            hashes = [_node(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    def subtree(self, start: int, end: int) -> bytes:
        """RFC 6962 ``MTH(D[start:end])`` for a range whose start is aligned to its left part."""
        n = end - start
        if n & (n - 1) == 0 and start % n == 0:
            return self.node(n.bit_length() - 1, start // n)
        k = _split(n)
        return _node(self.subtree(start, start + k), self.subtree(start + k, end))

    def inclusion_proof(self, index: int) -> list[bytes]:
        """RFC 6962 ``PATH(index, D[0:size])``, leaf side first."""
        if not 0 <= index < self.size:
            raise TransparencyError(f"log index {index} is outside a tree of size {self.size}")
        path: list[bytes] = []
        start, end, m = 0, self.size, index
        while end - start > 1:
            k = _split(end - start)
            if m < k:
                path.append(self.subtree(start + k, end))
                end = start + k
            else:
                path.append(self.subtree(start, start + k))
                start, m = start + k, m - k
        path.reverse()
        return path

    def entry(self, index: int) -> bytes:
        """The bytes of entry ``index`` from its entry bundle."""
        if not 0 <= index < self.size:
            raise TransparencyError(f"log index {index} is outside a tree of size {self.size}")
        tile = index // WIDTH
        data = self.get(f"tile/entries/{tile_index_path(tile)}{self._suffix(self.size, tile)}")
        entries, pos = [], 0
        while pos < len(data):
            if pos + 2 > len(data):
                raise TransparencyError(f"entry bundle {tile} is truncated")
            length = int.from_bytes(data[pos:pos + 2], "big")
            entries.append(data[pos + 2:pos + 2 + length])
            pos += 2 + length
        if pos != len(data) or len(entries) != self._width(self.size, tile):
            raise TransparencyError(f"entry bundle {tile}: expected {self._width(self.size, tile)} entries")
        return entries[index % WIDTH]
