"""The constant tensors and operator list of a ``.tflite`` file, read with the ``tflite`` package.

``tflite`` (PyPI) is the flatbuffer schema of TensorFlow Lite compiled to Python: it parses the
file without TensorFlow and without running anything. Quantised constants are dequantised here:
int8 weights and int32 biases carry one scale (and zero point) per output channel along their
``quantized_dimension``, and ``real = scale * (q - zero_point)``.

Only what the Magenta networks need is decoded (convolution, depthwise convolution and mirror-pad
options); other operators are listed with empty options.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_FILE_IDENTIFIER = b"TFL3"


class TFLiteError(ValueError):
    """A file that is not a readable TFLite model: ``path`` and ``reason`` (what is wrong, without
    the file's name, for a caller that words its own message around the file)."""

    def __init__(self, path, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path} is not a TFLite model ({reason})")


class _Malformed(Exception):
    """A problem found inside a parsed file (``read_tflite`` names the file)."""


@dataclass(frozen=True)
class Operator:
    """One operator of the graph: its builtin name, tensor names and the decoded options."""

    kind: str
    inputs: tuple
    outputs: tuple
    options: dict = field(default_factory=dict)


@dataclass
class TFLiteGraph:
    """The first subgraph of a model: inputs and outputs (name -> shape), operators in execution
    order, and every constant tensor by name (float32 after dequantisation; int32 tensors without
    quantisation, such as paddings, stay int32)."""

    path: Path
    inputs: dict
    outputs: dict
    operators: list
    constants: dict

    def ops(self, kind: str) -> list:
        return [op for op in self.operators if op.kind == kind]


def _numpy_dtype(tflite, type_code: int):
    table = {
        tflite.TensorType.FLOAT32: np.float32,
        tflite.TensorType.FLOAT16: np.float16,
        tflite.TensorType.INT32: np.int32,
        tflite.TensorType.INT8: np.int8,
        tflite.TensorType.UINT8: np.uint8,
        tflite.TensorType.INT16: np.int16,
        tflite.TensorType.INT64: np.int64,
    }
    return table.get(type_code)


def _buffer_bytes(model, raw: bytes, index: int) -> bytes | None:
    buffer = model.Buffers(index)
    if buffer is None:
        return None
    if buffer.DataLength() > 0:
        return buffer.DataAsNumpy().tobytes()
    # Files over 2 GB keep buffers after the flatbuffer and store an offset instead.
    offset = buffer.Offset() if hasattr(buffer, "Offset") else 0
    size = buffer.Size() if hasattr(buffer, "Size") else 0
    if offset > 1 and size > 0:
        return raw[offset : offset + size]
    return None


def _dequantize(values: np.ndarray, quantization) -> np.ndarray:
    scales = quantization.ScaleAsNumpy()
    zero_points = quantization.ZeroPointAsNumpy()
    if isinstance(zero_points, int) or np.size(zero_points) == 0:
        zero_points = np.zeros_like(scales, dtype=np.int64)
    scales = np.asarray(scales, dtype=np.float64)
    zero_points = np.asarray(zero_points, dtype=np.int64)
    if scales.size == 1:
        real = (values.astype(np.float64) - zero_points[0]) * scales[0]
    else:
        axis = quantization.QuantizedDimension()
        shape = [1] * values.ndim
        shape[axis] = scales.size
        if values.shape[axis] != scales.size:
            raise _Malformed(
                f"{scales.size} quantisation scales for axis {axis} of a tensor "
                f"of shape {values.shape}"
            )
        real = (values.astype(np.float64) - zero_points.reshape(shape)) * scales.reshape(shape)
    return real.astype(np.float32)


def _options(tflite, op, kind: str) -> dict:
    table = op.BuiltinOptions()
    if table is None:
        return {}
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        options = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
        options.Init(table.Bytes, table.Pos)
        decoded = {
            "padding": "SAME" if options.Padding() == tflite.Padding.SAME else "VALID",
            "stride": (options.StrideH(), options.StrideW()),
            "dilation": (options.DilationHFactor(), options.DilationWFactor()),
            "activation": _ACTIVATIONS.get(options.FusedActivationFunction(), "other"),
        }
        if kind == "DEPTHWISE_CONV_2D":
            decoded["depth_multiplier"] = options.DepthMultiplier()
        return decoded
    if kind == "MIRROR_PAD":
        options = tflite.MirrorPadOptions()
        options.Init(table.Bytes, table.Pos)
        return {
            "mode": "REFLECT" if options.Mode() == tflite.MirrorPadMode.REFLECT else "SYMMETRIC"
        }
    return {}


_ACTIVATIONS = {0: None, 1: "relu", 2: "relu_n1_to_1", 3: "relu6", 4: "tanh"}


def read_tflite(path) -> TFLiteGraph:
    """Parse ``path``; TFLiteError when it is not a TFLite flatbuffer (or a damaged one)."""
    try:
        import tflite
        from tflite.utils import opcode2name
    except ImportError as exc:  # a declared dependency; say so rather than fail obscurely
        raise ImportError(
            "reading .tflite weights needs the 'tflite' package: pip install tflite"
        ) from exc

    path = Path(path)
    raw = path.read_bytes()
    if len(raw) < 8 or raw[4:8] != _FILE_IDENTIFIER:
        raise TFLiteError(path, f"no '{_FILE_IDENTIFIER.decode()}' file identifier")
    try:
        model = tflite.Model.GetRootAs(raw, 0)
        if model.SubgraphsLength() < 1:
            raise _Malformed("no subgraph")
        graph = model.Subgraphs(0)
        names = []
        constants = {}
        for index in range(graph.TensorsLength()):
            tensor = graph.Tensors(index)
            name = tensor.Name().decode("utf-8")
            names.append(name)
            data = _buffer_bytes(model, raw, tensor.Buffer())
            if data is None:
                continue
            dtype = _numpy_dtype(tflite, tensor.Type())
            if dtype is None:
                continue
            shape = tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            values = np.frombuffer(data, dtype=dtype).reshape(shape)
            quantization = tensor.Quantization()
            if quantization is not None and quantization.ScaleLength() > 0:
                values = _dequantize(values, quantization)
            elif values.dtype == np.float16:
                values = values.astype(np.float32)
            else:
                values = values.copy()
            constants[name] = values

        def tensor_names(indices) -> tuple:
            return tuple(names[i] if i >= 0 else None for i in indices)

        def shapes(indices) -> dict:
            return {
                names[i]: tuple(int(s) for s in graph.Tensors(i).ShapeAsNumpy()) for i in indices
            }

        operators = []
        for index in range(graph.OperatorsLength()):
            op = graph.Operators(index)
            code = model.OperatorCodes(op.OpcodeIndex())
            # Newer files keep the code in BuiltinCode, older ones in DeprecatedBuiltinCode.
            kind = opcode2name(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()))
            operators.append(
                Operator(
                    kind,
                    tensor_names(op.InputsAsNumpy()),
                    tensor_names(op.OutputsAsNumpy()),
                    _options(tflite, op, kind),
                )
            )
        return TFLiteGraph(
            path,
            shapes(graph.InputsAsNumpy()),
            shapes(graph.OutputsAsNumpy()),
            operators,
            constants,
        )
    except _Malformed as exc:
        raise TFLiteError(path, str(exc)) from None
    except Exception as exc:  # a damaged flatbuffer raises whatever the accessors hit first
        error = type(exc).__qualname__
        if type(exc).__module__ != "builtins":  # struct.error, not a bare "error"
            error = f"{type(exc).__module__}.{error}"
        raise TFLiteError(path, f"{error}: {exc}") from exc
