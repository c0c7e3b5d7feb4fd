"""Image files for the CLI: PNG, JPEG and TIFF (16-bit TIFF in and out). No torch here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TIFF_SUFFIXES = {".tif", ".tiff"}
JPEG_SUFFIXES = {".jpg", ".jpeg"}
PIL_SUFFIXES = {".png"} | JPEG_SUFFIXES


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


def keeps_alpha(path) -> bool:
    """Whether the format of ``path`` can hold an alpha channel (JPEG cannot)."""
    return Path(path).suffix.lower() not in JPEG_SUFFIXES


def write_image(path, image: np.ndarray, bit_depth: int = 8) -> Path:
    """Write (H, W), (H, W, 3) or (H, W, 4) pixels as PNG/JPEG (8-bit) or TIFF (8- or 16-bit).

    Float data is read as [0, 1] and stretched over the bit depth (0..255 or 0..65535). Integer
    data must already have the bit depth's dtype (uint8 or uint16) and is written as it is, e.g. a
    result in its content's own range (``output_range="content"``). A fourth channel is alpha:
    PNG and TIFF keep it; JPEG has no alpha, so it is dropped there (the colours are written as
    they are, as image converters do) rather than refusing the file name the user chose.
    """
    check_output(path, bit_depth)
    path = Path(path)
    suffix = path.suffix.lower()
    scale, dtype = (65535, np.uint16) if bit_depth == 16 else (255, np.uint8)
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.floating):
        pixels = np.clip(np.rint(image.astype(np.float64) * scale), 0, scale).astype(dtype)
    elif image.dtype == dtype:
        pixels = image
    else:
        raise ValueError(f"{path}: {image.dtype} pixels cannot be written at {bit_depth} bits; "
                         f"pass {np.dtype(dtype).name} pixels, or floats in [0, 1] to be scaled")
    if pixels.ndim == 3 and pixels.shape[2] == 4 and not keeps_alpha(path):
        pixels = pixels[..., :3]
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in TIFF_SUFFIXES:
        import tifffile

        if pixels.ndim == 2:
            tifffile.imwrite(path, pixels, photometric="minisblack")
        else:
            extra = {"extrasamples": ("unassalpha",)} if pixels.shape[2] == 4 else {}
            tifffile.imwrite(path, pixels, photometric="rgb", **extra)
    else:
        from PIL import Image

        Image.fromarray(pixels).save(path, **({} if suffix == ".png" else {"quality": 95}))
    return path
