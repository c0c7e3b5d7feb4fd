"""The Magenta networks' weights: Google's int8 TFLite files converted to float32 torch state
dicts, cached on disk, and the networks loaded with them (``load_model``).

Names: a TFLite tensor ``a/b/c/weights`` (or ``depthwise_weights``) becomes the torch parameter
``a.b.c.weight`` and the bias feeding the same operator ``a.b.c.bias``. Magenta keeps the
embedding-to-norm convolutions in a separate ``style_params/`` scope; that prefix is dropped, so
``style_params/transformer/residual/residual1/conv1/StyleNorm/Conv_1/weights`` is the gamma
convolution of ``transformer.residual.residual1.conv1`` (``Conv`` gives beta, ``Conv_1`` gamma, as in
the file's ``batchnorm/mul`` and ``batchnorm/sub`` operators).

The converted float32 state dict is cached as ``<cache dir>/converted/<kind>-<sha256 of the
.tflite file>.pt`` (``torch.load(weights_only=True)`` reads it back in milliseconds).
"""

from __future__ import annotations

import os
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...weights import (
    MAGENTA_PREDICTOR,
    MAGENTA_TRANSFORMER,
    WeightsError,
    WeightsFile,
    file_sha256,
    load_torch_state_dict,
    locate,
    sha256_of,
)
from .magenta import NORM_EPSILON, StylePredictor, StyleTransformer
from .tflite import TFLiteError, TFLiteGraph, read_tflite


def layer_name(tensor_name: str) -> str:
    """The torch layer (module path) that a TFLite weights tensor belongs to, e.g.
    ``style_params/transformer/residual/residual1/conv1/StyleNorm/Conv_1/weights`` ->
    ``transformer.residual.residual1.conv1.StyleNorm.Conv_1``."""
    name = tensor_name
    if name.startswith("style_params/"):
        name = name[len("style_params/") :]
    for suffix in ("/depthwise_weights", "/weights"):
        if name.endswith(suffix):
            return name[: -len(suffix)].replace("/", ".")
    raise WeightsError(f"unexpected weights tensor name {tensor_name!r}")


def state_dict_from_tflite(graph: TFLiteGraph) -> tuple[dict, dict]:
    """Torch state dict (float32, NCHW kernels) and {layer key: stride} from the convolutions of
    ``graph``. TFLite keeps kernels as [out, kh, kw, in] (depthwise: [1, kh, kw, channels])."""
    state, strides = {}, {}
    for op in graph.operators:
        if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        weight_name, bias_name = op.inputs[1], (op.inputs[2] if len(op.inputs) > 2 else None)
        if weight_name not in graph.constants:
            raise WeightsError(f"{graph.path}: the kernel {weight_name!r} is not a constant")
        key = layer_name(weight_name)
        kernel = graph.constants[weight_name]
        if op.kind == "CONV_2D":
            kernel = kernel.transpose(0, 3, 1, 2)
        else:
            kernel = kernel.transpose(3, 0, 1, 2)
        state[f"{key}.weight"] = torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float32))
        if bias_name is not None:
            state[f"{key}.bias"] = torch.from_numpy(
                np.ascontiguousarray(graph.constants[bias_name], dtype=np.float32)
            )
        strides[key] = tuple(op.options.get("stride", (1, 1)))
    epsilons = [float(v) for k, v in graph.constants.items() if k.endswith("batchnorm/add/y")]
    if any(abs(e - NORM_EPSILON) > 1e-2 * NORM_EPSILON for e in epsilons):
        raise WeightsError(
            f"{graph.path}: instance-norm epsilon {epsilons[0]} differs from "
            f"Magenta's {NORM_EPSILON}; this is not the expected model"
        )
    return state, strides


_KINDS = {
    "predictor": (MAGENTA_PREDICTOR, StylePredictor, "style_image"),
    "transformer": (MAGENTA_TRANSFORMER, StyleTransformer, "content_image"),
}


def converted_cache_path(entry: WeightsFile, sha256: str) -> Path:
    kind = "predictor" if entry is MAGENTA_PREDICTOR else "transformer"
    return entry.cache_dir() / "converted" / f"{kind}-{sha256}.pt"


def _save_atomically(state: dict, target: Path) -> None:
    """Write to a temporary file and rename, so a concurrent reader never sees half a file."""
    temporary = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        os.close(handle)
        torch.save(state, temporary)
        os.replace(temporary, target)
    except OSError:  # a read-only cache costs a re-conversion next time, nothing more
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


_unremovable: set = set()


def _discard(cached: Path, problem: Exception, source: Path) -> None:
    """Delete a bad converted file; where the cache is read-only, keep converting ``source`` in
    memory instead, and say so once per file in this process."""
    try:
        cached.unlink(missing_ok=True)
    except OSError as exc:
        if str(cached) not in _unremovable:
            _unremovable.add(str(cached))
            warnings.warn(
                f"the cached converted weights {cached} are damaged ({problem}) and "
                f"cannot be replaced ({exc.strerror or exc}); converting {source} in "
                "memory instead, on every load. Delete the file, or make its folder "
                "writable, to convert only once.",
                RuntimeWarning,
                stacklevel=3,
            )


def load_state_dict(kind: str, path: Path) -> dict:
    """The converted state dict of the ``kind`` file at ``path``, from the cache when possible."""
    entry, module_type, input_name = _KINDS[kind]
    digest = sha256_of(path)
    cached = converted_cache_path(entry, digest)
    if cached.is_file():
        try:
            state = load_torch_state_dict(cached)
            _check_against(module_type(), state, {}, cached, entry)
            return state
        except WeightsError as exc:  # a damaged or stale cache entry: convert again
            _discard(cached, exc, path)
    try:
        graph = read_tflite(path)
    except TFLiteError as exc:  # one message, the file named once (the reason says the rest)
        raise WeightsError(
            f"cannot read the {entry.description} from {path}: it is not a valid TFLite model "
            f"({exc.reason}: truncated or corrupt?). Delete it and pass the right file as "
            f"{kind}_weights (download it from {entry.url}), or leave {kind}_weights unset for "
            "the default lookup"
        ) from None
    except OSError as exc:
        raise WeightsError(
            f"cannot read the {entry.description} from {path}: {exc.strerror or exc}"
        ) from exc
    if input_name not in graph.inputs:
        raise WeightsError(
            f"{path} is not the {entry.description}: its inputs are "
            f"{', '.join(graph.inputs)}, expected {input_name!r} "
            f"({entry.filename})"
        )
    state, strides = state_dict_from_tflite(graph)
    _check_against(module_type(), state, strides, path, entry)
    _save_atomically(state, cached)
    return state


def _check_against(module: nn.Module, state: dict, strides: dict, path: Path, entry: WeightsFile):
    """Every parameter has a tensor of its shape and every convolution its stride."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if expected[k].shape != state[k].shape)
    layers = dict(module.named_modules())
    for key, stride in strides.items():
        layer = layers.get(key)
        if layer is not None and tuple(layer.stride) != tuple(stride):
            wrong.append(f"{key} (stride {stride}, expected {tuple(layer.stride)})")
    if missing or unexpected or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}"
                if missing
                else "",
                f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}"
                if unexpected
                else "",
                f"different shape or stride: {', '.join(wrong[:4])}" if wrong else "",
            )
            if part
        )
        raise WeightsError(
            f"{path} does not match the {entry.description} ({detail}); use "
            f"{entry.filename} from {entry.url}"
        )


_loaded_models: dict = {}  # (kind, file, size, mtime, device) -> network in eval mode
_loaded_models_lock = threading.Lock()


def load_model(
    kind: str, explicit=None, device: torch.device | str = "cpu", *, directory=None
) -> nn.Module:
    """The ``kind`` ("predictor" or "transformer") network with its weights, in eval mode on
    ``device``; ``explicit`` is a .tflite path that bypasses the lookup, ``directory`` is searched
    first otherwise. Loaded models are kept for the process (a few MB)."""
    entry, module_type, _ = _KINDS[kind]
    path = locate(entry, explicit, directory=directory)
    stat = path.stat()
    key = (kind, str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(device))
    with _loaded_models_lock:
        model = _loaded_models.get(key)
        if model is None:
            model = module_type()
            model.weights_identity = f"file:{path.name}"  # for the results' provenance
            model.weights_sha256 = {path.name: file_sha256(path)}
            state = load_state_dict(kind, path)  # its WeightsError says what to do as it is
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:  # only a foreign file that passed every check gets here
                raise WeightsError(f"{path} does not match the {entry.description}: {exc}") from exc
            model = model.eval().requires_grad_(False).to(device)
            if torch.device(device).type != "mps":
                # NHWC: oneDNN's fast convolution layout on CPUs, and cuDNN's on tensor cores.
                model = model.to(memory_format=torch.channels_last)
            _loaded_models[key] = model
    return model
