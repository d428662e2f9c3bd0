"""Input orientation codes, as neuroglancer-scripts' `--input-orientation`.

A code has three letters, one per input axis in the order (column, row, slice): the anatomical
direction that axis points to. R/L is output x, A/P is y, S/I is z (RAS+ output); L, P and I
flip the axis. 48 codes: 6 permutations times 8 flips.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError
from ..format.geometry import triple

_AXIS = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}


@dataclass(frozen=True)
class Orientation:
    axes: tuple[int, int, int]      # output axis (0 x, 1 y, 2 z) of column, row, slice
    flips: tuple[bool, bool, bool]  # whether column, row, slice run against that axis

    @classmethod
    def parse(cls, code: str) -> Orientation:
        code = code.upper()
        if len(code) != 3 or any(c not in _AXIS for c in code) or len({_AXIS[c] for c in code}) != 3:
            raise UsageError(f"--input-orientation {code!r} is not a code like RAS, RIA or LPI "
                             "(one of R/L, A/P, S/I for each of column, row, slice)")
        return cls(triple(_AXIS[c] for c in code), triple(c in "LPI" for c in code))

    def output_shape(self, columns: int, rows: int, slices: int) -> tuple[int, int, int]:
        shape = [0, 0, 0]
        for axis, n in zip(self.axes, (columns, rows, slices)):
            shape[axis] = n
        return triple(shape)
