"""`jpeg` and `png`: a chunk as one 2-D image, x across, y then z down (format notes 3.1).

Through imagecodecs: libjpeg-turbo and libpng/zlib-ng, about twice as fast as pillow here.
"""

from __future__ import annotations

from dataclasses import dataclass

import imagecodecs
import numpy as np

from ..errors import DataError

JPEG_MAX_SIDE = 65535


def _image(chunk: np.ndarray, plane: str = "xy") -> np.ndarray:
    """(c, z, y, x) to an image: (z*y, x) for the xy plane, (z, y*x) for xz, channels last."""
    c, z, y, x = chunk.shape
    rows, cols = (z * y, x) if plane == "xy" else (z, y * x)
    image = chunk.reshape(c, rows, cols)
    # A copy, not ascontiguousarray: the codecs check strides, even those of 1-long axes.
    return (image[0] if c == 1 else np.moveaxis(image, 0, -1)).copy()


def _chunk(image: np.ndarray, shape: tuple[int, int, int, int], what: str) -> np.ndarray:
    c = shape[0]
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels != c or image.shape[0] * image.shape[1] != shape[1] * shape[2] * shape[3]:
        raise DataError(f"{what} of {image.shape[1]}x{image.shape[0]} with {channels} channel(s) "
                        f"does not hold a {shape[3]}x{shape[2]}x{shape[1]} chunk of {c}")
    planar = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    return planar.reshape(shape)


@dataclass(frozen=True)
class Jpeg:
    quality: int = 90
    plane: str = "xy"
    name = "jpeg"

    def encode(self, chunk: np.ndarray) -> bytes:
        image = _image(chunk, self.plane)
        if max(image.shape[:2]) > JPEG_MAX_SIDE:
            raise DataError(f"a {image.shape[1]}x{image.shape[0]} JPEG is over the 65535 limit; "
                            "use smaller chunks")
        return imagecodecs.jpeg8_encode(image, level=self.quality)

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        try:
            image = imagecodecs.jpeg8_decode(data)
        except Exception as exc:  # imagecodecs raises its own error types
            raise DataError(f"not a JPEG chunk ({exc})") from exc
        return _chunk(image, shape, "JPEG").astype(dtype, copy=False)

    def info(self) -> dict:
        return {"encoding": "jpeg"}


@dataclass(frozen=True)
class Png:
    level: int = 1  # fast zlib: most of PNG's gain on image data comes at the lowest levels
    name = "png"

    def encode(self, chunk: np.ndarray) -> bytes:
        image = _image(chunk)
        # imagecodecs underestimates the room that incompressible small images need.
        return imagecodecs.png_encode(image, level=self.level, out=2 * image.nbytes + 4096)

    def decode(self, data: bytes, shape: tuple[int, int, int, int], dtype: np.dtype) -> np.ndarray:
        try:
            image = imagecodecs.png_decode(data)
        except Exception as exc:  # imagecodecs raises its own error types
            raise DataError(f"not a PNG chunk ({exc})") from exc
        if image.dtype != np.dtype(dtype):
            raise DataError(f"PNG chunk holds {image.dtype}, the volume {np.dtype(dtype)}")
        return _chunk(image, shape, "PNG")

    def info(self) -> dict:
        return {"encoding": "png"}
