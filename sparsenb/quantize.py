"""Post-training static INT8 quantization of an exported backbone (ONNX Runtime's quantizer, QDQ
format), the form ONNX Runtime and OpenVINO run with INT8 kernels: weights INT8, per tensor and
symmetric (zero point 0, so a pruned weight stays exactly 0 and the sparsity survives), activations
UINT8 with ranges calibrated (min-max) on the task's own images. Written by hand only is the reader
that hands the calibration images to the quantizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def int8_static(src: str | Path, dst: str | Path, calibration: np.ndarray, batch_size: int | None = None) -> Path:
    """`src` quantized into `dst`; `calibration`: float32 images (N, 3, H, W), fed in batches of the
    model's static batch size."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, dst = Path(src), Path(dst)
    shape = onnx.load(src).graph.input[0].type.tensor_type.shape
    batch = batch_size or shape.dim[0].dim_value
    x = np.ascontiguousarray(calibration, dtype=np.float32)
    if len(x) < batch:
        raise ValueError(f"INT8 calibration needs at least one batch of {batch} images, got {len(x)}")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": x[i : i + batch]} for i in range(0, len(x) - batch + 1, batch)])

        def get_next(self):
            return next(self.batches, None)

    prepared = dst.with_name(dst.stem + "-prepared.onnx")  # ORT's pre-processing: shapes, folded constants
    quant_pre_process(str(src), str(prepared))
    quantize_static(
        str(prepared),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=False,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
    )
    return dst


def weight_sparsity(path: str | Path) -> float:
    """Fraction of zeros among the weights of the convolutions and matrix products of an ONNX graph
    (FP32 initializers, or the INT8 ones of a quantized graph)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    zeros = total = 0
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul", "ConvInteger", "QLinearConv"):
            continue
        name = node.input[3 if node.op_type == "QLinearConv" else 1]
        while name not in inits and name in producer:  # through DequantizeLinear (QDQ)
            name = producer[name].input[0]
        if name in inits:
            w = inits[name]
            zeros, total = zeros + int((w == 0).sum()), total + w.size
    return zeros / total if total else 0.0
