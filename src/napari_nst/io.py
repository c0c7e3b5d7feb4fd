"""Image files for the CLI: PNG, JPEG and TIFF (16-bit TIFF in and out). No torch here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TIFF_SUFFIXES = {".tif", ".tiff"}
PIL_SUFFIXES = {".png", ".jpg", ".jpeg"}


def read_image(path) -> np.ndarray:
    """The file's pixels with their own dtype (uint16 stays uint16); ValueError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            return np.asarray(tifffile.imread(path))
        from PIL import Image

        with Image.open(path) as image:
            if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert("RGBA" if "A" in image.mode or "transparency" in image.info
                                      else "RGB")
            return np.asarray(image)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the image ({exc})") from exc


def check_output(path, bit_depth: int = 8) -> None:
    """ValueError unless ``path`` names a format that can be written at ``bit_depth``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TIFF_SUFFIXES | PIL_SUFFIXES:
        raise ValueError(f"{path}: unsupported output format {suffix or '(none)'}; "
                         "use .png, .jpg, .jpeg, .tif or .tiff")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth {bit_depth} is not supported; use 8 or 16")
    if bit_depth == 16 and suffix not in TIFF_SUFFIXES:
        raise ValueError(f"{path}: 16-bit output needs a .tif/.tiff file name")


def write_image(path, image: np.ndarray, bit_depth: int = 8) -> Path:
    """Write float (H, W, 3) or (H, W) data in [0, 1] as PNG/JPEG (8-bit) or TIFF (8- or 16-bit)."""
    check_output(path, bit_depth)
    path = Path(path)
    suffix = path.suffix.lower()
    scale, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float64) * scale), 0, scale).astype(dtype)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in TIFF_SUFFIXES:
        import tifffile

        tifffile.imwrite(path, pixels, photometric="rgb" if pixels.ndim == 3 else "minisblack")
    else:
        from PIL import Image

        Image.fromarray(pixels).save(path, **({} if suffix == ".png" else {"quality": 95}))
    return path
