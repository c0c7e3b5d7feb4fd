"""Image files for the CLI: PNG, JPEG and TIFF (16-bit TIFF in and out; a plane of a TIFF stack),
and the checks of an output path made before a run. No torch here."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

TIFF_SUFFIXES = {".tif", ".tiff"}
JPEG_SUFFIXES = {".jpg", ".jpeg"}
PIL_SUFFIXES = {".png"} | JPEG_SUFFIXES


def read_stack(path) -> np.ndarray:
    """The file's pixels with their own dtype (uint16 stays uint16), channels last; a TIFF stack
    keeps its leading axes (Z, T, ...). ValueError if the file is missing, a folder or unreadable."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image file; pass one image file in it")
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                array = np.asarray(series.asarray())
                axes = series.axes
            if "S" in axes and len(axes) == array.ndim and axes.index("S") != array.ndim - 1:
                array = np.moveaxis(array, axes.index("S"), -1)  # planar RGB: channels last
            return array
        from PIL import Image

        with Image.open(path) as image:
            if image.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
                image = image.convert(
                    "RGBA" if "A" in image.mode or "transparency" in image.info else "RGB"
                )
            return np.asarray(image)
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{path}: cannot read the image ({exc})") from exc


def stack_axes(shape) -> int:
    """How many leading (stack) axes ``shape`` has in front of one image: an image is (H, W) or
    (H, W, C) with C <= 4 channels (grey, grey+alpha, RGB, RGBA)."""
    image_ndim = 3 if len(shape) >= 3 and shape[-1] <= 4 else 2
    return max(0, len(shape) - image_ndim)


def read_image(path, plane=None) -> np.ndarray:
    """One image of the file: (H, W) or (H, W, C), its own dtype; ValueError if unreadable.

    A TIFF stack -- leading axes such as Z or T in front of the image, e.g. (Z, H, W) or
    (T, Z, H, W, 3) -- needs ``plane``: one index counted over all leading axes in order (plane
    ``t * Z + z``), or a tuple with one index per leading axis. ``plane`` is ignored for a file
    that holds a single image, so one value can serve a stack content and a plain style.
    """
    array = read_stack(path)
    leading = stack_axes(array.shape)
    if leading == 0:
        return array
    counts = array.shape[:leading]
    total = int(np.prod(counts))
    height, width = array.shape[leading : leading + 2]
    if plane is None:
        per_axis = " or one index per leading axis, e.g. --plane 0,3" if leading > 1 else ""
        raise ValueError(
            f"{path} is a stack of {total} planes of {height}x{width} px (shape "
            f"{array.shape}); pick one with --plane N, N = 0..{total - 1}{per_axis}, "
            "or stylize every plane with --stack"
        )
    index = (plane,) if isinstance(plane, int) else tuple(plane)
    if len(index) == 1:
        if not 0 <= index[0] < total:
            raise ValueError(
                f"plane {index[0]} is out of range: {path} has {total} planes; use 0..{total - 1}"
            )
        index = np.unravel_index(index[0], counts)
    elif len(index) != leading or not all(0 <= i < n for i, n in zip(index, counts)):
        raise ValueError(
            f"plane {','.join(map(str, index))} does not fit {path}: its leading "
            f"axes have {' x '.join(map(str, counts))} planes; give one index "
            f"(0..{total - 1}) or one per leading axis"
        )
    return array[tuple(int(i) for i in index)].copy()  # not a view that keeps the stack alive


def check_writable(path) -> None:
    """ValueError saying why ``path`` cannot be written, found before a long run rather than
    after it: a folder of that name, a file where a folder is needed, no permission."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; name an output file, e.g. {path / 'stylized.png'}")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise ValueError(f"{path}: no permission to overwrite it; choose another output file")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:  # folders that the write creates
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{path}: {parent} is a file, not a folder; choose another output path")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{path}: no permission to write in {parent}; choose another folder")


def check_output(path, bit_depth: int = 8) -> None:
    """ValueError unless ``path`` names a format that can be written at ``bit_depth``."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in TIFF_SUFFIXES | PIL_SUFFIXES:
        raise ValueError(
            f"{path}: unsupported output format {suffix or '(none)'}; "
            "use .png, .jpg, .jpeg, .tif or .tiff"
        )
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
        raise ValueError(
            f"{path}: {image.dtype} pixels cannot be written at {bit_depth} bits; "
            f"pass {np.dtype(dtype).name} pixels, or floats in [0, 1] to be scaled"
        )
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


# --- stacks: read lazily, plane by plane ----------------------------------------------------------

ZARR_MARKERS = (".zarray", ".zgroup", "zarr.json")


def is_zarr(path) -> bool:
    path = Path(path)
    return path.suffix.lower() == ".zarr" or any((path / name).exists() for name in ZARR_MARKERS)


def open_stack(path):
    """A stack file or folder as a lazy array (nothing is read until a plane is): a TIFF (its
    pages and leading axes), a zarr array or OME-Zarr image (its full-resolution level), or a
    folder of image files of one shape, stacked in name order. ValueError saying what is wrong."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    if is_zarr(path):
        return _open_zarr(path)
    if path.is_dir():
        return _open_folder(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        import tifffile
        import zarr

        with tifffile.TiffFile(path) as tif:
            axes = tif.series[0].axes
        if "S" in axes and axes.index("S") != len(axes) - 1:
            return read_stack(path)  # planar RGB: read whole, channels moved last
        store = tifffile.imread(path, aszarr=True)
        opened = zarr.open(store, mode="r")
        return opened if hasattr(opened, "shape") else opened["0"]  # a pyramid: full resolution
    return read_stack(path)  # one PNG or JPEG: a stack of one plane


def _open_zarr(path: Path):
    import zarr

    opened = zarr.open(str(path), mode="r")
    if hasattr(opened, "shape"):
        return opened
    multiscales = opened.attrs.get("multiscales") or opened.attrs.get("ome", {}).get("multiscales")
    if multiscales:
        return opened[multiscales[0]["datasets"][0]["path"]]
    names = sorted(name for name, _ in opened.arrays())
    raise ValueError(
        f"{path} is a zarr group without OME-Zarr multiscales metadata; pass one of "
        f"its arrays, e.g. {path / names[0]}"
        if names
        else f"{path} is a zarr group that holds no array"
    )


IMAGE_SUFFIXES = TIFF_SUFFIXES | PIL_SUFFIXES


def _open_folder(path: Path):
    import dask
    import dask.array as da

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"{path} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})")
    first = read_stack(files[0])
    for file in files[1:]:  # headers only: a mismatch is found before the run, not in it
        if _header_shape(file) != first.shape:
            raise ValueError(
                f"{file} is {_header_shape(file)} pixels, but {files[0].name} is "
                f"{first.shape}: the images of a folder stack must all have one "
                "shape (and dtype)"
            )

    def read(file: Path) -> np.ndarray:
        image = read_stack(file)
        if image.shape != first.shape or image.dtype != first.dtype:
            raise ValueError(
                f"{file} is {image.shape} {image.dtype}, but {files[0].name} is "
                f"{first.shape} {first.dtype}: the images of a folder stack must "
                "all have one shape and dtype"
            )
        return image

    planes = [da.from_delayed(dask.delayed(read)(file), first.shape, first.dtype) for file in files]
    return da.stack(planes)


def _header_shape(file: Path) -> tuple:
    """The shape ``read_stack`` gives for ``file``, from its header."""
    if file.suffix.lower() in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(file) as tif:
            return tuple(tif.series[0].shape)
    from PIL import Image

    with Image.open(file) as image:
        bands = len(image.getbands())
        return (image.height, image.width) if bands == 1 else (image.height, image.width, bands)
