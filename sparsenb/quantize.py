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
        # (not CalibMaxIntermediateOutputs: onnxruntime 1.32 drops the batches it is meant to merge)
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


def conv_integer_layout(src: str | Path, dst: str | Path) -> Path:
    """The QDQ graph of `int8_static` rewritten into the layout DeepSparse's INT8 kernels run: every
    Conv whose input, weight and bias come through DequantizeLinear becomes ConvInteger (UINT8
    input and its zero point, the INT8 weight, zero point 0) + the INT32 bias + one FP32 scale
    (input scale x weight scale). A raw QDQ graph runs none of its ops in DeepSparse's own kernels
    (issue 36); no library writes this layout outside SparseML's exporter, hence by hand."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    value = lambda name: numpy_helper.to_array(inits[name])  # noqa: E731
    new_nodes, new_inits = [], []
    for node in g.node:
        dq = [producer.get(i) for i in node.input]
        if (
            node.op_type != "Conv"
            or len(node.input) != 3
            or any(d is None or d.op_type != "DequantizeLinear" for d in dq)
        ):
            new_nodes.append(node)
            continue
        (xq, xs, xz), (w, ws, wz), (b, bs, _) = (list(d.input) for d in dq)
        scale = (value(xs) * value(ws)).astype(np.float32).reshape(-1)
        bias = np.round(value(b).astype(np.float64) * value(bs).astype(np.float64) / scale).astype(np.int32)
        name = node.output[0]
        new_inits += [
            numpy_helper.from_array(bias.reshape(1, -1, 1, 1), f"{name}_ci_bias"),
            numpy_helper.from_array(
                scale.reshape(1, -1, 1, 1) if scale.size > 1 else scale.reshape(()), f"{name}_ci_scale"
            ),
        ]
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        new_nodes += [
            helper.make_node("ConvInteger", [xq, w, xz, wz], [f"{name}_ci_int32"], **attrs),
            helper.make_node("Add", [f"{name}_ci_int32", f"{name}_ci_bias"], [f"{name}_ci_biased"]),
            helper.make_node("Cast", [f"{name}_ci_biased"], [f"{name}_ci_float"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Mul", [f"{name}_ci_float", f"{name}_ci_scale"], [name]),
        ]
    used = {i for n in new_nodes for i in n.input} | {o.name for o in g.output}
    while True:  # DequantizeLinear nodes nothing reads any more
        dead = [n for n in new_nodes if n.op_type == "DequantizeLinear" and not set(n.output) & used]
        if not dead:
            break
        new_nodes = [n for n in new_nodes if n not in dead]
        used = {i for n in new_nodes for i in n.input} | {o.name for o in g.output}
    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    kept = [i for i in g.initializer if i.name in used]
    del g.initializer[:]
    g.initializer.extend(kept)
    # stamped as DeepSparse's bundled runtime reads it: opset 13 of the default domain, IR version 7
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    del model.opset_import[:]
    model.opset_import.append(helper.make_opsetid("", max(13, opset)))
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return Path(dst)
