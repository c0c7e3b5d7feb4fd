"""Where pretrained weights come from: one registry, one lookup order, clear errors.

Lookup order for every file:
  1. an explicit path (or, for VGG-19, a ready torch module) passed by the caller;
  2. ``$NAPARI_NST_WEIGHTS_DIR/<upstream file name>``, checked against its sha256;
  3. the cache (VGG-19: torchvision's own ``$TORCH_HOME/hub/checkpoints``, shared with other tools;
     the Magenta files: ``$NAPARI_NST_CACHE_DIR`` or ``~/.cache/napari-nst``);
  4. a download into that cache, from the upstream URL or, if ``$NAPARI_NST_DOWNLOAD_URL`` is
     set, from that base URL by file name (a lab's mirror), with a progress bar and the sha256
     check; nothing but a complete, verified file is ever left in the cache.
Firewalled machines copy the files into the weights directory.

Downloads report their progress to the bar factory set for the current thread by
``download_progress`` (napari's worker sets one that shows in napari's activity dock); without
one they print a tqdm bar to stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

WEIGHTS_DIR_ENV = "NAPARI_NST_WEIGHTS_DIR"
CACHE_DIR_ENV = "NAPARI_NST_CACHE_DIR"
DOWNLOAD_URL_ENV = "NAPARI_NST_DOWNLOAD_URL"
_CHUNK = 1 << 20


class WeightsError(RuntimeError):
    """Weights that cannot be found, downloaded or read; the message says where to put them."""


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file: its upstream name, URL and sha256 (or, for torchvision's files,
    the sha256 prefix embedded in the name)."""

    filename: str
    url: str
    sha256: str
    description: str
    torch_hub_cache: bool = False

    def cache_dir(self) -> Path:
        if self.torch_hub_cache:
            import torch.hub

            return Path(torch.hub.get_dir()) / "checkpoints"
        configured = os.environ.get(CACHE_DIR_ENV)
        if configured:
            return Path(configured).expanduser()
        return (
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser()
            / "napari-nst"
        )


VGG19 = WeightsFile(
    "vgg19-dcbb9e9d.pth",
    "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "dcbb9e9d",
    "VGG-19 ImageNet weights (torchvision VGG19_Weights.IMAGENET1K_V1, 548 MB)",
    torch_hub_cache=True,
)
VGG19_DISTILLED = WeightsFile(
    "cd_vgg19_distilled_16x_conv5_1.pth",
    "https://github.com/MingSun-Tse/Collaborative-Distillation/raw/"
    "4a269dc90020721ef9b279b2926c62f5bcd6d209/trained_models/wct_se_16x_new/20191109-211322_E20.pth",
    "9417c34d0d8d621bc6af78be745f1b8d30f5f210efa01e50655c60eb3770816b",
    "VGG-19 distilled 16x (Collaborative Distillation, Wang et al. 2020; 3.9 MB)",
)
_MAGENTA_URL = (
    "https://storage.googleapis.com/download.tensorflow.org/models/tflite/"
    "task_library/style_transfer/android/"
)
MAGENTA_PREDICTOR = WeightsFile(
    "magenta_arbitrary-image-stylization-v1-256_int8_prediction_1.tflite",
    _MAGENTA_URL + "magenta_arbitrary-image-stylization-v1-256_int8_prediction_1.tflite",
    "af6ad4b2e7aeba0675f32636082ab915ced5375229a3f8aff7e714c6213f5ed2",
    "Magenta arbitrary-image-stylization style predictor (int8 TFLite, 2.8 MB)",
)
MAGENTA_TRANSFORMER = WeightsFile(
    "magenta_arbitrary-image-stylization-v1-256_int8_transfer_1.tflite",
    _MAGENTA_URL + "magenta_arbitrary-image-stylization-v1-256_int8_transfer_1.tflite",
    "7a1550643cf034a4d813c0aa276976cd15da4141b4f1ec3631db1d0d9c8e2cd1",
    "Magenta arbitrary-image-stylization transformer (int8 TFLite, 0.3 MB)",
)


_CD_URL = (
    "https://github.com/MingSun-Tse/Collaborative-Distillation/raw/"
    "4a269dc90020721ef9b279b2926c62f5bcd6d209/trained_models/"
)


def _universal(kind: str, level: int, upstream: str, sha256: str, size: str) -> WeightsFile:
    return WeightsFile(
        f"cd_wct_16x_{kind}{level}.pth",
        _CD_URL + upstream,
        sha256,
        f"universal style transfer {kind} {level} (Collaborative Distillation "
        f"16x, Wang et al. 2020; {size})",
    )


#: Encoder k (up to relu k_1) of universal style transfer, k = 1..5; encoder 5 is the distilled
#: VGG-19 itself.
UNIVERSAL_ENCODERS = {
    1: _universal(
        "encoder",
        1,
        "wct_se_16x_new/20191110-133713_E20.pth",
        "f74755a65164a88e0db8cbb7d99d7078b9fa505df0953fac5123bfc7c84e0ea4",
        "10 kB",
    ),
    2: _universal(
        "encoder",
        2,
        "wct_se_16x_new/20191110-132713_E20.pth",
        "cb654af6bae77176f8c7721c965483e865b987f2f1612dda1ba0d0b5c3819a61",
        "53 kB",
    ),
    3: _universal(
        "encoder",
        3,
        "wct_se_16x_new/20191110-132705_E20.pth",
        "269cdd0e2634e3e1e5d3005b9e7eca0f4cc8077653fee1ac8c0cf1cbe9ab8758",
        "0.2 MB",
    ),
    4: _universal(
        "encoder",
        4,
        "wct_se_16x_new/20191110-132643_E20.pth",
        "d2f059cbcd6669556a43aadef58d20c8b280462c18b60a9e7424a14dd271cd6b",
        "1.2 MB",
    ),
    5: VGG19_DISTILLED,
}
#: Decoder k, trained to invert encoder k.
UNIVERSAL_DECODERS = {
    1: _universal(
        "decoder",
        1,
        "wct_se_16x_new_sd/20191111-091942_E20.pth",
        "05f26ad40044c019da0cf731372d5bd2ee4b477825c7f45508da70b1cd5a95fd",
        "3 kB",
    ),
    2: _universal(
        "decoder",
        2,
        "wct_se_16x_new_sd/20191111-091932_E20.pth",
        "94dd26f0e69857f79bf284a43a3708aa05c09c2593427c7f6e400ad12ce314e6",
        "31 kB",
    ),
    3: _universal(
        "decoder",
        3,
        "wct_se_16x_new_sd/20191111-091929_E20.pth",
        "005faba27859435762a8a9386116c00629cd8835a01617d0a71defa577c42174",
        "0.1 MB",
    ),
    4: _universal(
        "decoder",
        4,
        "wct_se_16x_new_sd/20191111-092553_E20.pth",
        "902f65e2c6033d803d02df552eb898e5985190a7ae67d155e384826eec6f04cb",
        "0.9 MB",
    ),
    5: _universal(
        "decoder",
        5,
        "wct_se_16x_new_sd/20191110-204615_E20.pth",
        "17fd0f81622f01366eb21cb4d40140ee38cf988ed6eaf266629709c397a8b485",
        "3.2 MB",
    ),
}


def weights_dir() -> Path | None:
    """The directory named by $NAPARI_NST_WEIGHTS_DIR, if set."""
    configured = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(configured).expanduser() if configured else None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _where_to_put(entry: WeightsFile) -> str:
    target = weights_dir() or f"the directory named by ${WEIGHTS_DIR_ENV}"
    checksum = f" (sha256 {entry.sha256})" if len(entry.sha256) == 64 else ""
    return (
        f"download {entry.url} and put it, named {entry.filename}{checksum}, into {target} "
        f"(or into {entry.cache_dir()})"
    )


#: {(resolved path, size, mtime): sha256} of the files hashed in this process.
_digests: dict = {}


def _digest_key(path: Path) -> tuple:
    stat = path.stat()
    return str(path.resolve()), stat.st_size, stat.st_mtime_ns


def file_sha256(path) -> str:
    """The sha256 of a weights file (its check, and a run's provenance), hashed once per
    process while its size and mtime stay the same."""
    path = Path(path)
    key = _digest_key(path)
    if key not in _digests:
        _digests[key] = sha256_of(path)
    return _digests[key]


def verify(path: Path, entry: WeightsFile) -> Path:
    """``path`` if its sha256 matches ``entry``, else WeightsError saying what to do.

    A file already hashed in this process (same size and mtime) is not hashed again.
    """
    actual = file_sha256(path)
    if not actual.startswith(entry.sha256):
        raise WeightsError(
            f"{path} is not the expected {entry.description}: its sha256 is {actual[:16]}..., "
            f"expected {entry.sha256}; the file is corrupt or a different file. "
            f"Delete it and {_where_to_put(entry)}."
        )
    return path


#: A progress-bar factory: ``factory(total_bytes or None, description)`` returns an object with
#: ``update(n)`` and ``close()`` (tqdm's and napari's ``progress`` both qualify).
BarFactory = Callable[[int | None, str], object]
_thread = threading.local()


@contextlib.contextmanager
def download_progress(factory: BarFactory | None):
    """Report the downloads of this thread to bars made by ``factory`` while the block runs."""
    previous = getattr(_thread, "factory", None)
    _thread.factory = factory
    try:
        yield
    finally:
        _thread.factory = previous


def _tqdm_bar(total: int | None, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024)


def download_url(entry: WeightsFile) -> str:
    """Where ``entry`` is downloaded from: the mirror named by $NAPARI_NST_DOWNLOAD_URL, if set."""
    mirror = os.environ.get(DOWNLOAD_URL_ENV)
    return f"{mirror.rstrip('/')}/{entry.filename}" if mirror else entry.url


def _download(entry: WeightsFile, target: Path, progress: bool, timeout: float = 60) -> Path:
    """Stream ``entry`` into a temporary file beside ``target``, check its sha256, then move it
    into place, so an interrupted or wrong download never leaves a file that looks cached."""
    url = download_url(entry)
    target.parent.mkdir(parents=True, exist_ok=True)
    factory = getattr(_thread, "factory", None) or (_tqdm_bar if progress else None)
    digest = hashlib.sha256()
    handle = tempfile.NamedTemporaryFile(
        dir=target.parent, prefix=f".{entry.filename}.", suffix=".part", delete=False
    )
    bar = None
    try:
        with handle, urllib.request.urlopen(url, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            if factory is not None:
                size = f" ({total / 1e6:.1f} MB)" if total else ""
                bar = factory(total, f"Downloading {entry.filename}{size}")
            while chunk := response.read(_CHUNK):
                handle.write(chunk)
                digest.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ConnectionError) as exc:
        Path(handle.name).unlink(missing_ok=True)
        raise WeightsError(
            f"could not download {entry.description} from {url} ({exc}). Without network "
            f"access, {_where_to_put(entry)}."
        ) from exc
    except BaseException:  # interrupted: leave nothing behind
        Path(handle.name).unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
    actual = digest.hexdigest()
    if not actual.startswith(entry.sha256):
        Path(handle.name).unlink(missing_ok=True)
        raise WeightsError(
            f"the file downloaded from {url} is not the expected {entry.description}: its sha256 "
            f"is {actual[:16]}..., expected {entry.sha256[:16]}... (a proxy or captive portal "
            f"page?). Nothing was kept; {_where_to_put(entry)}."
        )
    os.replace(handle.name, target)
    _digests[_digest_key(target)] = actual  # hashed while it streamed in: not again
    return target


def _existing_folder(folder, source: str, entry: WeightsFile, remedy: str) -> Path | None:
    """``folder`` (from ``source``: a setting or a variable) as a Path, or WeightsError saying
    that it does not exist or is a file; None stays None."""
    if folder is None:
        return None
    path = Path(folder).expanduser()
    if path.is_dir():
        return path
    problem = "is a file, not a folder" if path.exists() else "does not exist"
    raise WeightsError(
        f"weights directory {path} {problem} (it is named by {source}); it "
        f"should hold {entry.filename}: {remedy}"
    )


def locate(
    entry: WeightsFile,
    explicit=None,
    *,
    directory=None,
    download: bool = True,
    progress: bool = True,
    timeout: float = 60,
) -> Path:
    """Path of a verified copy of ``entry``, following the lookup order of this module;
    ``directory`` (the ``weights_dir`` setting) is searched before $NAPARI_NST_WEIGHTS_DIR;
    ``timeout``: seconds a download waits for the server."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            problem = "is a folder, not a file" if path.is_dir() else "does not exist"
            raise WeightsError(
                f"weights file {path} {problem}; pass the path of "
                f"{entry.filename}, or leave it unset to use the default lookup"
            )
        return path
    for folder, source, remedy in (
        (
            directory,
            "the weights_dir setting",
            "choose the folder that holds it, or leave it empty for the default lookup",
        ),
        (
            weights_dir(),
            f"${WEIGHTS_DIR_ENV}",
            f"create it and put the file there, or unset {WEIGHTS_DIR_ENV}",
        ),
    ):
        folder = _existing_folder(folder, source, entry, remedy)
        if folder is not None and (folder / entry.filename).is_file():
            return verify(folder / entry.filename, entry)
    cached = entry.cache_dir() / entry.filename
    if cached.is_file():
        return verify(cached, entry)
    if not download:
        raise WeightsError(f"{entry.description} not found; {_where_to_put(entry)}.")
    return _download(entry, cached, progress, timeout)


def load_torch_state_dict(path: Path) -> dict:
    """``torch.load`` with ``weights_only=True`` and an error that names the file."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a truncated or foreign file
        raise WeightsError(
            f"cannot read weights from {path}: {exc.__class__.__name__}: {exc}. "
            "The file is corrupt or not a torch state dict; replace it."
        ) from exc
    if not isinstance(state, dict):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state dict of tensors")
    return state
