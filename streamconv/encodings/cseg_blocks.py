"""compressed_segmentation of a channel whose blocks hold few labels, with numpy, in the words of
the reference encoder (PyPI `compressed-segmentation`, Neuroglancer's algorithm).

Atlases are regions with smooth boundaries: most 8^3 blocks hold one label and the blocks a
boundary crosses hold two or three. The reference encoder looks every voxel up in a hash table
(twice); here the one-label blocks are found with one comparison of the whole chunk, and only
the mixed blocks are sorted, indexed and bit-packed, all blocks at once. The stream is the
reference's, word for word (format notes 4.1; tests/test_encodings.py compares them):

* per block, in block order (x fastest), two header words: the table's offset | bits << 24,
  and where the block's packed indices start;
* then per block: its packed indices (bits 0, 1, 2 or 4 for 1, 2, 3-4, 5-16 labels; index of
  a voxel = rank of its label among the block's sorted labels, voxels x fastest, packed from
  the low bits of each word), followed by its table (the sorted labels, uint64 as two words)
  unless a block before it had the same table, whose offset it then points to.

Blocks of more than 16 labels, chunks not a whole number of blocks, or offsets past 24 bits:
None, and the reference encoder's turn.
"""

from __future__ import annotations

import numpy as np

MOST = 16  # labels in a block handled here (4 bits per voxel)
_BITS = np.array([0, 0, 1, 2, 2] + [4] * (MOST - 4))  # bits per index, by labels in the block


def encode_blocks(channel: np.ndarray, block: tuple[int, int, int]) -> np.ndarray | None:
    """The words of one channel's stream (`channel`: z, y, x in C order; `block`: x, y, z), or
    None when the reference encoder must do it."""
    (bx, by, bz), (z, y, x) = block, channel.shape
    if z % bz or y % by or x % bx:
        return None
    nz, ny, nx = z // bz, y // by, x // bx
    n, size = nz * ny * nx, bx * by * bz
    grid = channel.reshape(nz, bz, ny, by, nx, bx)
    values = np.ascontiguousarray(grid[:, 0, :, 0, :, 0]).reshape(-1)  # each block's first voxel
    words = channel.dtype.itemsize // 4
    if n and values.min() == values.max() and 2 * n < 1 << 24 and (channel == values[0]).all():
        return _one_label(n, values[:1], words)  # background, or inside a region
    uniform = _uniform(channel, values.reshape(nz, ny, nx), block).reshape(-1)
    count = np.ones(n, np.int64)
    mixed = np.flatnonzero(~uniform)
    if len(mixed):
        bz_, by_, bx_ = np.unravel_index(mixed, (nz, ny, nx))
        # the mixed blocks' voxels, x fastest, one block a row: a take of their rows of `bx`
        # voxels (a fancy index of the 6-D view costs three times more)
        lines = (np.arange(bz)[:, None] * y + np.arange(by)).reshape(-1) * nx  # a block's rows
        first_line = (bz_ * (bz * y) + by_ * by) * nx + bx_
        rows = channel.reshape(-1, bx).take(first_line[:, None] + lines, axis=0).reshape(len(mixed), size)
        found = _tables(rows)
        if found is None:
            return None
        labels, table = found
        widest = table.shape[1]
        count[mixed] = labels
    else:
        widest, table = 1, np.zeros((0, 1), channel.dtype)
    bits = _BITS[count]
    packed = -(-bits * size // 32)  # words of indices per block
    # tables: one per distinct set of labels, written after the first block that has it
    owner = np.empty(n, np.int64)
    alone = np.flatnonzero(uniform)
    _, at, inverse = np.unique(values[alone], return_index=True, return_inverse=True)
    owner[alone] = alone[at[inverse.reshape(-1)]]
    if len(mixed):  # a mixed block never shares a one-label table; padded tables are equal when
        # their labels are (a row holds exactly its labels)
        rowed = np.ascontiguousarray(table).view(np.dtype((np.void, table.itemsize * widest))).reshape(-1)
        _, at, inverse = np.unique(rowed, return_index=True, return_inverse=True)
        owner[mixed] = mixed[at[inverse.reshape(-1)]]
    writes = owner == np.arange(n)
    advance = packed + writes * count * words
    start = 2 * n + np.cumsum(advance) - advance
    table_at = (start + packed)[owner]
    if n and int(table_at.max()) >= 1 << 24:  # the reference encoder refuses
        return None
    out = np.zeros(2 * n + int(advance.sum()), np.uint32)
    out[0:2 * n:2] = table_at | (bits << 24)
    out[1:2 * n:2] = start
    if len(mixed):
        for b, fewest, most in ((1, 2, 2), (2, 3, 4), (4, 5, MOST)):
            group = np.flatnonzero((labels >= fewest) & (labels <= most))
            if len(group):
                _pack(out, start[mixed[group]], rows[group], table[group, :min(most, widest) - 1], b)
    # table words: the uniform blocks' one label, the mixed blocks' sorted labels
    labels_of = np.zeros((n, widest), channel.dtype)
    labels_of[:, 0] = values
    if len(mixed):
        labels_of[mixed] = table
    keep = writes[:, None] & (np.arange(widest) < count[:, None])
    at_word = table_at[:, None] + words * np.arange(widest)
    little = labels_of[keep].astype(labels_of.dtype.newbyteorder("<")).view("<u4").reshape(-1, words)
    for w in range(words):
        out[at_word[keep] + w] = little[:, w]
    return out


def _one_label(n: int, value: np.ndarray, words: int) -> np.ndarray:
    """The stream of `n` blocks of one label (`value`, an array of it): the first block writes
    the table, which every block points to (what the general path gives, with less to do)."""
    out = np.empty(2 * n + words, np.uint32)
    out[0:2 * n:2] = 2 * n
    out[1:2 * n:2] = 2 * n + words
    out[1] = 2 * n
    out[2 * n:] = value.astype(value.dtype.newbyteorder("<")).view("<u4")
    return out


def _tables(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """How many labels each block (a row) holds, and its table: the labels sorted, padded with
    the largest (never below a voxel: the padding counts in no rank); None past `MOST`. Blocks of
    two labels (most, on a boundary) need no sort: their smallest and largest are the table."""
    low, high = rows.min(axis=1), rows.max(axis=1)
    labels = np.full(len(rows), 2)
    more = np.flatnonzero(~((rows == low[:, None]) | (rows == high[:, None])).all(axis=1))
    if not len(more):
        return labels, np.stack([low, high], axis=1)
    ordered = np.sort(rows[more], axis=1)
    r, c = np.nonzero(ordered[:, 1:] != ordered[:, :-1])  # row-major: r ascending
    labels[more] = 1 + np.bincount(r, minlength=len(more))
    widest = int(labels.max())
    if widest > MOST:
        return None
    table = np.repeat(high[:, None], widest, axis=1)
    table[:, 0] = low
    table[more[r], np.arange(len(r)) - np.searchsorted(r, r) + 1] = ordered[r, c + 1]
    return labels, table


def _pack(out: np.ndarray, starts: np.ndarray, rows: np.ndarray, below: np.ndarray, bits: int) -> None:
    """The blocks' voxels (`rows`) as indices of `bits` bits, packed from the low bits of each
    word, at `starts` in `out`. A voxel's index is its label's rank in the block's sorted table:
    how many of the table's labels (all but the largest: `below`) lie below it."""
    index: np.ndarray = rows > below[:, :1]
    if bits == 1:
        stream = np.packbits(index, axis=1, bitorder="little")
    else:
        rank = index.astype(np.uint8)
        for j in range(1, below.shape[1]):
            rank += rows > below[:, j:j + 1]
        # `per` indices to a byte, the first in the low bits: the bytes of little-endian words
        per = 8 // bits
        if rank.shape[1] % per:
            rank = np.pad(rank, ((0, 0), (0, per - rank.shape[1] % per)))
        rank = rank.reshape(len(rows), -1, per)
        stream = rank[:, :, 0].copy()
        for i in range(1, per):
            stream |= rank[:, :, i] << (bits * i)
    if stream.shape[1] % 4:
        stream = np.pad(stream, ((0, 0), (0, 4 - stream.shape[1] % 4)))
    words = stream.view("<u4")
    out[starts[:, None] + np.arange(words.shape[1])] = words


def _uniform(channel: np.ndarray, first: np.ndarray, block: tuple[int, int, int]) -> np.ndarray:
    """(nz, ny, nx): whether each block holds one label. One comparison of the chunk against
    its blocks' first voxels along whole rows, then the rows of each block folded (8-voxel
    rows: as one 64-bit word of booleans), reductions along contiguous axes only: numpy's
    reductions over several strided axes cost ten times more. 32-bit labels in rows of even
    length are compared in pairs, each pair read as one 64-bit word (half the comparisons)."""
    (bx, by, bz), x = block, channel.shape[2]
    nz, ny, nx = first.shape
    if channel.dtype.itemsize == 4 and bx % 2 == 0 and channel.strides[-1] == 4:
        # a pair of equal labels v reads as v * (2**32 + 1) whatever the byte order
        pairs = first.astype(np.uint64) * np.uint64(0x100000001)
        same = channel.view(np.uint64).reshape(nz, bz, ny, by, x // 2) == \
            np.repeat(pairs, bx // 2, axis=-1)[:, None, :, None, :]
        bx //= 2
    else:
        same = channel.reshape(nz, bz, ny, by, x) == np.repeat(first, bx, axis=-1)[:, None, :, None, :]
    whole = _WHOLE.get(bx)
    if whole is not None:  # a block's row of booleans as one word: all true is 0x0101...
        rows = same.view(whole[0]) == whole[1]  # (nz, bz, ny, by, nx)
    else:
        rows = same.reshape(nz, bz, ny, by, nx, bx).all(axis=-1)
    rows = np.logical_and.reduce(rows.reshape(nz, bz, ny * by * nx), axis=1)
    return np.logical_and.reduce(rows.reshape(nz, ny, by, nx), axis=2)


#: rows of n booleans read as one word, and that word when all are true
_WHOLE = {n: (np.dtype(t), np.dtype(t).type(int("01" * n, 16)))
          for n, t in ((2, np.uint16), (4, np.uint32), (8, np.uint64))}
