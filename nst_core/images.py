"""Image files in and out: any common mode to float RGB in [0, 1], atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nst_video.nst_core.errors import InvalidInputError
from nst_video.nst_core.files import atomic_path, check_writable
from nst_video.nst_core.size import Size

Image.MAX_IMAGE_PIXELS = 200_000_000  # refuse decompression bombs beyond ~14k x 14k


def _to_rgb_array(image: Image.Image) -> np.ndarray:
    """Convert grayscale, 16-bit, palette, RGBA or CMYK images to float RGB in [0, 1]."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        gray = np.asarray(image, dtype="float32")
        gray /= 65535.0 if gray.max() > 255 or image.mode.startswith("I;16") else 255.0
        return np.repeat(np.clip(gray, 0, 1)[..., None], 3, axis=-1)
    if image.mode == "F":
        gray = np.clip(np.asarray(image, dtype="float32"), 0, 1)
        return np.repeat(gray[..., None], 3, axis=-1)
    if image.mode in ("RGBA", "LA", "P", "PA") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(white, rgba)  # transparent areas become white
    return np.asarray(image.convert("RGB"), dtype="float32") / 255.0


def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as float32 RGB (H, W, 3) in [0, 1], honouring EXIF orientation."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InvalidInputError(f"{path}: file is empty (0 bytes)")
    try:
        with Image.open(path) as image:
            image.load()
            return _to_rgb_array(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise InvalidInputError(f"{path}: not a readable image ({error})") from None
    except OSError as error:
        raise InvalidInputError(f"{path}: unreadable image ({error})") from None


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] to uint8 with rounding (not truncation)."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype("uint8")


def save_image(image: np.ndarray, path: str | os.PathLike, quality: int = 92) -> Path:
    """Write an RGB image atomically (nst_core.files): a complete file or nothing."""
    path = Path(path)
    check_writable(path)
    image_format = Image.registered_extensions().get(path.suffix.lower())
    if image_format is None:
        raise InvalidInputError(f"{path}: unknown image extension (use .png or .jpg)")
    pixels = image if image.dtype == np.uint8 else to_uint8(image)
    try:
        with atomic_path(path) as tmp, open(tmp, "xb") as handle:
            Image.fromarray(pixels).save(handle, format=image_format, quality=quality)
    except OSError as error:
        raise InvalidInputError(f"cannot write {path}: {error.strerror or error}") from None
    return path


def resize(image: np.ndarray, size: Size) -> np.ndarray:
    """Bicubic resize of a float (H, W, 3) or (B, H, W, 3) image, antialiased, clipped to [0, 1]."""
    from keras import ops  # here, so that reading images does not import TensorFlow

    resized = ops.image.resize(image, size.hw, interpolation="bicubic", antialias=True)
    return np.clip(np.asarray(ops.convert_to_numpy(resized)), 0.0, 1.0).astype("float32")
