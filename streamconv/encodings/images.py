"""`jpeg` and `png`: a chunk as one 2-D image, x across, y then z down (format notes 3.1).

Through imagecodecs: libjpeg-turbo and libpng/zlib-ng, about twice as fast as pillow here.
"""

from __future__ import annotations

from dataclasses import dataclass

import imagecodecs
import numpy as np

from ..errors import DataError, UsageError
from .base import CodecBase, CodecOptions, Encoded

JPEG_MAX_SIDE = 65535
PLANES = ("xy", "xz")  # of a JPEG chunk's image (neuroglancer-scripts' --jpeg-plane)


def _image(chunk: np.ndarray, plane: str = "xy") -> np.ndarray:
    """(c, z, y, x) to an image: (z*y, x) for the xy plane, (z, y*x) for xz, channels last.

    One copy, into a fresh array seen as (z, y, x, c): a chunk is a box of its slab, so a reshape
    would copy it first (docs/benchmarks.md); a fresh array also
    has the plain strides the codecs check, even those of 1-long axes."""
    c, z, y, x = chunk.shape
    rows, cols = (z * y, x) if plane == "xy" else (z, y * x)
    image = np.empty((rows, cols) if c == 1 else (rows, cols, c), chunk.dtype)
    image.reshape(z, y, x, c)[...] = np.moveaxis(chunk, 0, -1)
    return image


def _chunk(image: np.ndarray, shape: tuple[int, int, int, int], what: str) -> np.ndarray:
    c = shape[0]
    channels = 1 if image.ndim == 2 else image.shape[2]
    if channels != c or image.shape[0] * image.shape[1] != shape[1] * shape[2] * shape[3]:
        raise DataError(f"{what} of {image.shape[1]}x{image.shape[0]} with {channels} channel(s) "
                        f"does not hold a {shape[3]}x{shape[2]}x{shape[1]} chunk of {c}")
    planar = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    return planar.reshape(shape)


@dataclass(frozen=True)
class Jpeg(CodecBase):
    quality: int = 90
    plane: str = "xy"
    name = "jpeg"

    @classmethod
    def check(cls, dtype: np.dtype, channels: int, volume_type: str) -> None:
        if dtype != np.uint8 or channels not in (1, 3) or volume_type == "segmentation":
            raise UsageError(f"jpeg stores uint8 images of 1 or 3 channels, not {volume_type} "
                             f"{dtype.name} with {channels} channel(s)")

    @classmethod
    def configure(cls, options: CodecOptions) -> Jpeg:
        if not 1 <= options.jpeg_quality <= 100 or options.jpeg_plane not in PLANES:
            raise UsageError("--jpeg-quality is 1 to 100 and --jpeg-plane xy or xz")
        return cls(options.jpeg_quality, options.jpeg_plane)

    def check_chunk_size(self, chunk_size: tuple[int, int, int]) -> None:
        """A JPEG side is at most 65535 pixels: a chunk's image is (z*y, x), or (z, y*x) for xz."""
        x, y, z = chunk_size
        if max((z * y, x) if self.plane == "xy" else (z, y * x)) > JPEG_MAX_SIDE:
            raise UsageError(f"chunks of {x}x{y}x{z} make JPEG images over 65535 pixels high; "
                             "use a smaller --chunk-size")

    def encode(self, chunk: np.ndarray) -> Encoded:
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


@dataclass(frozen=True)
class Png(CodecBase):
    level: int = 1  # fast zlib: most of PNG's gain on image data comes at the lowest levels
    name = "png"

    @classmethod
    def check(cls, dtype: np.dtype, channels: int, volume_type: str) -> None:
        if dtype.name not in ("uint8", "uint16") or not 1 <= channels <= 4:
            raise UsageError(f"png stores uint8 or uint16 with 1 to 4 channels, not {dtype.name} "
                             f"with {channels}")

    def encode(self, chunk: np.ndarray) -> Encoded:
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
