"""roicore's ops registered with torch.library: opcheck, torch.compile (fullgraph),
torch.export, ONNX (dynamo exporter -> onnxruntime), MultiScaleRoIAlign against
torchvision (forward, gradients, whole detectors), bfloat16 and autocast."""

from __future__ import annotations

import copy
import warnings
from collections import OrderedDict

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install 'roicore[torch]')")

import roicore  # noqa: E402
import roicore.torch as rt  # noqa: E402

ops = torch.ops.roicore

DEVICES = ["cpu"]
try:
    import cupy  # noqa: F401

    if torch.cuda.is_available():
        DEVICES.append(pytest.param("cuda", marks=pytest.mark.gpu))
except ImportError:
    pass


def _tv():
    return pytest.importorskip("torchvision", reason="torchvision not installed")


ROIS = torch.tensor(
    [[0, 1.3, 1.1, 6.2, 7.7], [1, 0.5, 2.0, 9.0, 8.0], [0, -1.5, 3.2, 4.4, 9.6]],
    dtype=torch.float64,
)


def _x(shape=(2, 3, 10, 11), dtype=torch.float64, device="cpu", seed=0):
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape))  # distinct values: no ties in the max modes
    v = torch.randperm(n, generator=g).to(torch.float64) / n
    return v.reshape(shape).to(dtype).to(device)


# ----------------------------------------------------------------------------- opcheck
# (op, args after (input, rois)); output_size is the op's [PH, PW]
FWD_CASES = [
    (ops.roi_pool.default, ([3, 2], 1.0, "fast_rcnn", "NCHW", None, False)),
    (ops.roi_pool.default, ([2, 2], 0.5, "equal", "NHWC", 1, False)),
    (ops.roi_align.default, ([3, 2], 1.0, 2, False, "avg", "NCHW", None, False)),
    (ops.roi_align.default, ([2, 3], 0.5, 0, True, "max", "NHWC", 1, False)),
    (ops.roi_warp.default, ([3, 2], 1.0, 2, "avg", None, "NCHW", None, False)),
    (ops.roi_warp.default, ([2, 2], 1.0, 1, "max", "mnc", "NCHW", 1, False)),
]
BWD = {ops.roi_pool.default: ops.roi_pool_backward.default,
       ops.roi_align.default: ops.roi_align_backward.default,
       ops.roi_warp.default: ops.roi_warp_backward.default}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("op", "args"), FWD_CASES, ids=lambda v: str(v)[:40])
def test_opcheck_forward_and_backward(op, args, device):
    nhwc = "NHWC" in args
    x = _x((2, 10, 11, 3) if nhwc else (2, 3, 10, 11), device=device).requires_grad_(True)
    r = ROIS.to(device)
    torch.library.opcheck(op, (x, r, *args))
    y = op(x.detach(), r, *args)
    g = torch.rand_like(y)
    torch.library.opcheck(BWD[op], (g, x.detach(), r, *args),
                          test_utils=("test_schema", "test_faketensor"))


POOL_IDX_CASES = [([3, 2], 1.0, "fast_rcnn", "NCHW", None, False),
                  ([2, 2], 0.5, "equal", "NHWC", 1, False),
                  ([4, 3], 0.5, "fast_rcnn", "NHWC", 2, True)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("args", POOL_IDX_CASES, ids=lambda v: str(v)[:40])
def test_opcheck_roi_pool_with_indices(args, device):
    nhwc = "NHWC" in args
    x = _x((2, 10, 11, 3) if nhwc else (2, 3, 10, 11), device=device).requires_grad_(True)
    r = ROIS.to(device)
    torch.library.opcheck(ops.roi_pool_with_indices.default, (x, r, *args))
    y, idx = ops.roi_pool_with_indices(x.detach(), r, *args)
    g = torch.rand_like(y)
    torch.library.opcheck(ops.roi_pool_backward_indices.default,
                          (g, idx, r, list(x.shape), *args))
    # the same output and (from the winners) the same gradient as the plain op's
    # recomputing backward, bit for bit
    assert torch.equal(y, ops.roi_pool(x.detach(), r, *args))
    assert idx.dtype == torch.int32
    assert torch.equal(ops.roi_pool_backward_indices(g, idx, r, list(x.shape), *args),
                       ops.roi_pool_backward(g, x.detach(), r, *args))


SAMPLED_IDX_CASES = [
    (ops.roi_align_with_indices.default, ops.roi_align_backward_indices.default,
     ops.roi_align.default, ops.roi_align_backward.default,
     ([3, 2], 1.0, 2, False, "max", "NCHW", None, False)),
    (ops.roi_align_with_indices.default, ops.roi_align_backward_indices.default,
     ops.roi_align.default, ops.roi_align_backward.default,
     ([2, 3], 0.5, 0, True, "max", "NHWC", 1, False)),
    (ops.roi_warp_with_indices.default, ops.roi_warp_backward_indices.default,
     ops.roi_warp.default, ops.roi_warp_backward.default,
     ([3, 2], 0.5, -1, "max", None, "NCHW", 2, False)),
]


@pytest.mark.parametrize("case", SAMPLED_IDX_CASES, ids=lambda c: str(c[0]) + str(c[4])[:30])
def test_opcheck_sampled_max_with_indices(case):
    fwd_idx, bwd_idx, fwd, bwd, args = case
    nhwc = "NHWC" in args
    x = _x((2, 10, 11, 3) if nhwc else (2, 3, 10, 11)).requires_grad_(True)
    torch.library.opcheck(fwd_idx, (x, ROIS, *args))
    y, idx = fwd_idx(x.detach(), ROIS, *args)
    assert idx.dtype == torch.int32 and idx.shape == y.shape
    g = torch.rand_like(y)
    torch.library.opcheck(bwd_idx, (g, idx, ROIS, list(x.shape), *args))
    assert torch.equal(y, fwd(x.detach(), ROIS, *args))
    assert torch.equal(bwd_idx(g, idx, ROIS, list(x.shape), *args),
                       bwd(g, x.detach(), ROIS, *args))
    # the public function with return_indices=True runs it: the same gradient as the
    # recomputing op, and finite differences agree
    fn = rt.roi_align if "align" in str(fwd_idx) else rt.roi_warp
    kw = dict(sampling_ratio=args[2], layout=args[-3], num_threads=args[-2], mode="max")
    if fn is rt.roi_align:
        kw["aligned"] = args[3]
    out, i2 = fn(x, ROIS, tuple(args[0]), args[1], return_indices=True, **kw)
    assert "with_indices" in type(out.grad_fn).__name__
    assert torch.equal(out, y) and torch.equal(i2, idx)
    (got,) = torch.autograd.grad(out, x, g)
    assert torch.equal(got, bwd(g, x.detach(), ROIS, *args))
    assert torch.autograd.gradcheck(
        lambda t: fn(t, ROIS, tuple(args[0]), args[1], return_indices=True, **kw)[0], (x,))


def test_sampled_return_indices_needs_max_mode():
    x = _x()
    with pytest.raises(ValueError, match="return_indices=True needs mode='max'"):
        rt.roi_align(x, ROIS, 2, return_indices=True)
    with pytest.raises(ValueError, match="return_indices=True needs mode='max' and no compat"):
        rt.roi_warp(x, ROIS, 2, 1.0, 1, mode="max", compat="mnc", return_indices=True)
    # without return_indices the max modes keep the recomputing op (cheaper here)
    xg = x.clone().requires_grad_(True)
    y = rt.roi_align(xg, ROIS, 2, mode="max")
    assert isinstance(y, torch.Tensor) and "with_indices" not in type(y.grad_fn).__name__


def test_sampled_max_bf16_and_autocast_through_stored_winners():
    x = _x((2, 3, 10, 11), dtype=torch.float32)
    g = torch.rand(3, 3, 2, 2)
    xb = x.bfloat16().requires_grad_(True)
    y, _ = rt.roi_align(xb, ROIS, 2, sampling_ratio=2, mode="max", return_indices=True)
    (gb,) = torch.autograd.grad(y, xb, g.bfloat16())
    xr = x.bfloat16().float().requires_grad_(True)
    yr = ops.roi_align(xr, ROIS, [2, 2], 1.0, 2, False, "max", "NCHW", None, False)
    (gr,) = torch.autograd.grad(yr, xr, g.bfloat16().float())
    assert y.dtype == gb.dtype == torch.bfloat16
    assert torch.equal(y, yr.bfloat16()) and torch.equal(gb, gr.bfloat16())
    xa = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya, _ = rt.roi_warp(xa, ROIS, 2, mode="max", return_indices=True)
    assert "with_indices" in type(ya.grad_fn).__name__ and ya.dtype == torch.float32
    (ga,) = torch.autograd.grad(ya, xa, g)
    yw = ops.roi_warp(x, ROIS, [2, 2], 1.0, -1, "max", None, "NCHW", None, False)
    assert torch.equal(ya, yw)
    assert torch.equal(ga, ops.roi_warp_backward(g, x, ROIS, [2, 2], 1.0, -1, "max", None,
                                                 "NCHW", None, False))


def test_roi_pool_with_indices_fake_gives_dtype_and_shape():
    from torch._subclasses.fake_tensor import FakeTensorMode

    with FakeTensorMode() as mode:
        x = torch.empty(2, 3, 10, 11)
        rois = mode.from_tensor(ROIS)
        y, idx = ops.roi_pool_with_indices(x, rois, [3, 2], 1.0, "fast_rcnn", "NCHW", None,
                                           False)
        assert (y.shape, y.dtype) == ((3, 3, 3, 2), torch.float32)
        assert (idx.shape, idx.dtype) == ((3, 3, 3, 2), torch.int32)
        y, idx = ops.roi_pool_with_indices(torch.empty(1, 7, 9, 3, dtype=torch.float64),
                                           rois, [2, 2], 1.0, "fast_rcnn", "NHWC", None,
                                           False)
        assert (idx.shape, idx.dtype, y.dtype) == ((3, 2, 2, 3), torch.int32, torch.float64)
        g = ops.roi_pool_backward_indices(y, idx, rois, [1, 7, 9, 3], [2, 2], 1.0,
                                          "fast_rcnn", "NHWC", None, False)
        assert (g.shape, g.dtype) == ((1, 7, 9, 3), torch.float64)


def test_roi_pool_saves_winners_not_the_input():
    """With a gradient to compute, roicore.torch.roi_pool runs the op with stored
    winners: autograd keeps the int32 winners and the rois, not the input."""
    tv = _tv()
    x = _x((2, 3, 10, 11), dtype=torch.float32).requires_grad_(True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = rt.roi_pool(x, ROIS.float(), (3, 2), 1.0)
    assert "roi_pool_with_indices" in type(y.grad_fn).__name__
    assert all(t.data_ptr() != x.data_ptr() for t in saved)
    assert any(t.dtype == torch.int32 and t.shape == y.shape for t in saved)
    g = torch.rand_like(y)
    (got,) = torch.autograd.grad(y, x, g)
    want = tv.ops.roi_pool(x, ROIS.float(), (3, 2), 1.0)
    (ref,) = torch.autograd.grad(want, x, g)
    assert torch.equal(y, want) and torch.equal(got, ref)
    # no gradient needed: the plain op (no winners computed)
    with torch.no_grad():
        assert rt.roi_pool(x, ROIS.float(), (3, 2), 1.0).grad_fn is None


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_roi_pool_return_indices_are_torchvision_argmax(layout):
    _tv()  # torch.ops.torchvision
    x = _x((2, 3, 10, 11), dtype=torch.float32)
    r = ROIS.float()
    out, idx = rt.roi_pool(x, r, (3, 2), 0.5, return_indices=True)
    ref, argmax = torch.ops.torchvision.roi_pool(x, r, 0.5, 3, 2)
    assert torch.equal(out, ref) and torch.equal(idx, argmax)
    if layout == "NHWC":
        o2, i2 = rt.roi_pool(x.permute(0, 2, 3, 1).contiguous(), r, (3, 2), 0.5,
                             layout="NHWC", return_indices=True)
        assert torch.equal(o2, out.permute(0, 2, 3, 1)) and torch.equal(
            i2, idx.permute(0, 2, 3, 1))
    # the default returns the output only, as torchvision
    assert isinstance(rt.roi_pool(x, r, (3, 2), 0.5), torch.Tensor)
    with pytest.raises(TypeError, match="return_indices"):
        rt.roi_pool(x, r, 2, return_indices=1)


def test_roi_pool_backward_indices_rejects_bad_winners():
    x = _x((2, 3, 10, 11))
    args = ([3, 2], 1.0, "fast_rcnn", "NCHW", None, False)
    y, idx = ops.roi_pool_with_indices(x, ROIS, *args)
    g = torch.rand_like(y)
    with pytest.raises(ValueError, match="indices"):
        ops.roi_pool_backward_indices(g, idx + 10 * 11, ROIS, list(x.shape), *args)
    with pytest.raises(ValueError, match="indices"):
        ops.roi_pool_backward_indices(g, idx[:1], ROIS, list(x.shape), *args)


def test_roi_pool_bf16_and_autocast_through_stored_winners():
    tv = _tv()
    x = _x((2, 3, 10, 11), dtype=torch.float32)
    r = ROIS.float()
    g = torch.rand(3, 3, 3, 2)
    xb = x.bfloat16().requires_grad_(True)
    y = rt.roi_pool(xb, r, (3, 2))
    (gb,) = torch.autograd.grad(y, xb, g.bfloat16())
    xt = x.bfloat16().float().requires_grad_(True)
    yt = tv.ops.roi_pool(xt, r, (3, 2))
    (gt,) = torch.autograd.grad(yt, xt, g.bfloat16().float())
    assert y.dtype == gb.dtype == torch.bfloat16
    assert torch.equal(y.float(), yt) and torch.equal(gb, gt.bfloat16())
    xa = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ya = rt.roi_pool(xa, r, (3, 2))
    assert ya.dtype == torch.float32 and "with_indices" in type(ya.grad_fn).__name__
    (ga,) = torch.autograd.grad(ya, xa, g)
    assert torch.equal(ya, tv.ops.roi_pool(x, r, (3, 2)))
    assert torch.equal(ga, torch.autograd.grad(tv.ops.roi_pool(xa, r, (3, 2)), xa, g)[0])


def _ms_args(scales=(0.25, 0.125), k=(2, 3)):
    return (list(scales), [2, 2], 2, False, k[0], k[1], 224, 4, 1e-6, None, False)


def _ms_inputs(requires_grad=True):
    feats = [_x((2, 3, 16, 16), seed=1), _x((2, 3, 8, 8), seed=2)]
    feats = [f.requires_grad_(requires_grad) for f in feats]
    rois = torch.tensor([[0, 1, 1, 30, 30], [1, 2, 2, 60, 50], [0, 0, 0, 3, 3],
                         [1, 5, 5, 7, 7]], dtype=torch.float64)
    return feats, rois


def test_opcheck_multi_scale():
    feats, rois = _ms_inputs()
    torch.library.opcheck(ops.multi_scale_roi_align.default, (feats, rois, *_ms_args()))


def test_multi_scale_gradcheck():
    feats, rois = _ms_inputs()
    args = _ms_args()
    assert torch.autograd.gradcheck(
        lambda a, b: ops.multi_scale_roi_align([a, b], rois, *args), tuple(feats))


def test_double_backward_raises_clearly():
    x = _x().requires_grad_(True)
    y = rt.roi_align(x, ROIS, 2, sampling_ratio=2)
    (g,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="double backward of roicore::roi_align"):
        g.sum().backward()


def test_ops_are_registered_in_roicore_namespace():
    for name in ("roi_pool", "roi_align", "roi_warp", "multi_scale_roi_align"):
        for suffix in ("", "_backward"):
            assert hasattr(ops, name + suffix)
    for name in ("roi_pool", "roi_align", "roi_warp"):
        assert hasattr(ops, name + "_with_indices")
        assert hasattr(ops, name + "_backward_indices")


def test_bad_dtype_and_shape_messages():
    with pytest.raises(TypeError, match="`input` must have a floating dtype"):
        rt.roi_align(torch.zeros(1, 1, 4, 4, dtype=torch.int32), ROIS.float(), 2)
    with pytest.raises(ValueError, match=r"`rois` must have shape \(K, 5\)"):
        rt.roi_align(torch.zeros(1, 1, 4, 4), torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match="batch index"):  # checked in the kernel
        rt.roi_pool(torch.zeros(1, 1, 4, 4), torch.tensor([[3.0, 0, 0, 1, 1]]), 2)


# ----------------------------------------------------------------------------- compile, export
class _Three(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.align = rt.RoIAlign(3, 0.5, 2, True)
        self.pool = rt.RoIPool(2, 0.5)
        self.warp = rt.RoIWarp(2, 0.5, mode="max")

    def forward(self, x, boxes):
        return self.align(x, boxes), self.pool(x, boxes), self.warp(x, boxes)


BOXES = [torch.tensor([[1.3, 1.1, 16.2, 17.7]]),
         torch.tensor([[0.5, 2.0, 19.0, 8.0], [3.0, 3.0, 9.0, 9.0]])]


def test_compile_fullgraph_bit_identical_forward_and_backward():
    x = torch.randn(2, 4, 20, 24, generator=torch.Generator().manual_seed(0),
                    requires_grad=True)
    m = _Three()
    eager = m(x, BOXES)
    compiled = torch.compile(m, fullgraph=True)(x, BOXES)  # fullgraph: a break raises
    for e, c in zip(eager, compiled, strict=True):
        assert torch.equal(e, c)
        g = torch.rand_like(e)
        (ge,) = torch.autograd.grad(e, x, g, retain_graph=True)
        (gc,) = torch.autograd.grad(c, x, g, retain_graph=True)
        assert torch.equal(ge, gc)
        assert ge.abs().sum() > 0


class _ConvPool(torch.nn.Module):
    """A trainable layer before the pooler: its output requires grad while
    torch.export traces it."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 1)
        self.pool = rt.RoIPool((3, 2), 0.5)

    def forward(self, x, rois):
        return self.pool(self.conv(x), rois)


def test_export_of_a_trainable_model_keeps_the_plain_roi_pool():
    x, r = torch.randn(2, 4, 20, 24), _random_rois(seed=4)
    m = _ConvPool()
    ep = torch.export.export(m, (x, r))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert "roicore.roi_pool.default" in targets
    assert "roicore.roi_pool_with_indices.default" not in targets
    assert torch.equal(ep.module()(x, r), m(x, r))


def test_onnx_trainable_model_roi_pool_is_max_roi_pool():
    x, r = torch.randn(2, 4, 20, 24), _random_rois(seed=5)
    m = _ConvPool()
    proto, got = _onnx_run(m, x, r)
    assert [n.op_type for n in proto.graph.node if "Roi" in n.op_type] == ["MaxRoiPool"]
    with torch.no_grad():
        np.testing.assert_allclose(got, m(x, r).numpy(), rtol=1e-5, atol=1e-5)


def test_export_has_the_registered_ops_and_runs():
    x = torch.randn(2, 4, 20, 24)
    m = _Three()
    ep = torch.export.export(m, (x, BOXES))
    targets = {str(n.target) for n in ep.graph.nodes if n.op == "call_function"}
    assert {"roicore.roi_align.default", "roicore.roi_pool.default",
            "roicore.roi_warp.default"} <= targets
    for a, b in zip(ep.module()(x, BOXES), m(x, BOXES), strict=True):
        assert torch.equal(a, b)


# ----------------------------------------------------------------------------- ONNX
def _onnx_run(model, *args, opset=None):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed")
    pytest.importorskip("onnxscript", reason="onnxscript not installed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(model.eval(), args, dynamo=True, verbose=False,
                                 opset_version=opset,
                                 custom_translation_table=rt.onnx_translation_table())
    proto = prog.model_proto
    sess = ort.InferenceSession(proto.SerializeToString())
    feed = {i.name: a.numpy() for i, a in zip(sess.get_inputs(), args, strict=True)}
    return proto, sess.run(None, feed)[0]


def _random_rois(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 30 - 5  # some boxes start outside the map
    wh = torch.rand(n, 2, generator=g) * 25
    b = torch.randint(0, 2, (n, 1), generator=g).float()
    return torch.cat([b, xy, xy + wh], 1)


@pytest.mark.parametrize(("aligned", "sampling_ratio", "scale", "opset"),
                         [(False, 2, 0.5, None), (True, -1, 1.0, None), (True, 3, 0.25, 16)])
def test_onnx_roi_align_node_in_onnxruntime(aligned, sampling_ratio, scale, opset):
    x = torch.randn(2, 4, 20, 24, generator=torch.Generator().manual_seed(1))
    r = _random_rois()
    model = rt.RoIAlign((3, 4), scale, sampling_ratio, aligned)
    proto, got = _onnx_run(model, x, r, opset=opset)
    nodes = [n for n in proto.graph.node if n.op_type == "RoiAlign"]
    assert len(nodes) == 1
    attrs = {a.name: a for a in nodes[0].attribute}
    mode = attrs["coordinate_transformation_mode"].s.decode()
    assert mode == ("half_pixel" if aligned else "output_half_pixel")
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 16
    np.testing.assert_allclose(got, model(x, r).numpy(), rtol=1e-6, atol=1e-6)


def test_onnx_roi_pool_is_max_roi_pool():
    x = torch.randn(2, 4, 20, 24, generator=torch.Generator().manual_seed(2))
    r = _random_rois(seed=3)
    model = rt.RoIPool((3, 2), 0.5)
    proto, got = _onnx_run(model, x, r)
    assert [n.op_type for n in proto.graph.node if "Roi" in n.op_type] == ["MaxRoiPool"]
    np.testing.assert_array_equal(got, model(x, r).numpy())


class _FPNPooler(torch.nn.Module):
    def __init__(self, shapes):
        super().__init__()
        self.pool = rt.MultiScaleRoIAlign(NAMES, 3, 2)
        self.shapes = shapes

    def forward(self, f0, f1, f2, f3, b0, b1):
        x = OrderedDict(zip(NAMES, (f0, f1, f2, f3), strict=True))
        return self.pool(x, [b0, b1], self.shapes)


def test_onnx_multi_scale_roi_align_in_onnxruntime():
    x, boxes, shapes = _fpn(6, H=128, W=192, C=4, n_boxes=30)
    args = tuple(x[n].detach() for n in NAMES) + tuple(boxes)
    model = _FPNPooler(shapes)
    proto, got = _onnx_run(model, *args)
    assert [n.op_type for n in proto.graph.node].count("RoiAlign") == 4
    np.testing.assert_allclose(got, model(*args).numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("model", "name"), [
    (rt.RoIAlign(2, mode="max"), "roicore::roi_align with mode='max'"),
    (rt.RoIWarp(2), "roicore::roi_warp"),
    (rt.RoIPool(2, bins="equal"), "roicore::roi_pool with bins='equal'"),
], ids=["align-max", "warp", "pool-equal"])
def test_onnx_unsupported_modes_name_the_op(model, name):
    pytest.importorskip("onnxscript", reason="onnxscript not installed")
    x, r = torch.randn(1, 2, 8, 8), torch.tensor([[0.0, 1, 1, 5, 5]])
    with pytest.raises(Exception, match="has no ONNX equivalent") as info, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (x, r), dynamo=True, verbose=False,
                          custom_translation_table=rt.onnx_translation_table())
    assert name in str(info.value)


# ----------------------------------------------------------------------------- MultiScaleRoIAlign
NAMES = ["0", "1", "2", "3"]


def _fpn(seed, H=320, W=480, C=8, n_boxes=60, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = OrderedDict((n, torch.randn(2, C, H // s, W // s, generator=g, dtype=dtype)
                     .requires_grad_(True)) for n, s in zip(NAMES, (4, 8, 16, 32), strict=True))
    x["pool"] = torch.randn(2, C, H // 64, W // 64, generator=g, dtype=dtype)  # not pooled
    boxes = []
    for _ in range(2):
        xy = torch.rand(n_boxes, 2, generator=g, dtype=dtype) * torch.tensor([W, H])
        wh = torch.rand(n_boxes, 2, generator=g, dtype=dtype) ** 2 * torch.tensor([W, H])
        boxes.append(torch.cat([xy, xy + wh], 1))
    boxes[0][0] = torch.tensor([10.0, 10.0, 10.0, 10.0])  # zero area: lowest level
    boxes[1][0] = torch.tensor([50.0, 10.0, 40.0, 30.0])  # x2 < x1: NaN level, no level
    return x, boxes, [(H, W), (H - 20, W - 40)]


def _grads(y, x, g):
    return torch.autograd.grad(y, [x[n] for n in NAMES], g, allow_unused=True)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("kw", [dict(output_size=7, sampling_ratio=2),
                                dict(output_size=(14, 14), sampling_ratio=-1),
                                dict(output_size=(3, 5), sampling_ratio=1, canonical_scale=112,
                                     canonical_level=3)], ids=["box", "mask-adaptive", "custom"])
def test_multiscale_bit_identical_to_torchvision(seed, kw):
    tv = _tv()
    x, boxes, shapes = _fpn(seed)
    kw = dict(kw)
    size, sr = kw.pop("output_size"), kw.pop("sampling_ratio")
    ref_mod = tv.ops.MultiScaleRoIAlign(NAMES, size, sr, **kw)
    our_mod = rt.MultiScaleRoIAlign(NAMES, size, sr, **kw)
    ref, got = ref_mod(x, boxes, shapes), our_mod(x, boxes, shapes)
    assert got.dtype == ref.dtype and torch.equal(got, ref)
    assert our_mod.scales == ref_mod.scales
    levels = ref_mod.map_levels(boxes)
    assert len(torch.unique(levels)) >= 3  # the test covers several levels
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(seed))
    for a, b in zip(_grads(ref, x, g), _grads(got, x, g), strict=True):
        assert torch.equal(a, b)


def test_multiscale_single_level_and_subset_of_names():
    tv = _tv()
    x, boxes, shapes = _fpn(3)
    for names in (["2"], ["0", "2"]):
        ref = tv.ops.MultiScaleRoIAlign(names, 5, 2)(x, boxes, shapes)
        assert torch.equal(rt.MultiScaleRoIAlign(names, 5, 2)(x, boxes, shapes), ref)


def test_multiscale_scales_fixed_by_first_call_and_from_torchvision():
    tv = _tv()
    x, boxes, shapes = _fpn(4)
    ref_mod = tv.ops.MultiScaleRoIAlign(NAMES, 7, 2)
    ref_mod(x, boxes, shapes)
    ours = rt.MultiScaleRoIAlign.from_torchvision(ref_mod)
    assert ours.scales == ref_mod.scales
    other = [(700, 900)]  # later calls keep the first call's scales, as in torchvision
    assert torch.equal(ours(x, boxes, other), ref_mod(x, boxes, other))
    fresh = rt.MultiScaleRoIAlign.from_torchvision(tv.ops.MultiScaleRoIAlign(NAMES, 7, 2))
    assert fresh.scales is None and repr(fresh) == repr(ref_mod)


def test_multiscale_compile_fullgraph_and_export():
    x, boxes, shapes = _fpn(5, H=128, W=192, C=4, n_boxes=20)
    m = rt.MultiScaleRoIAlign(NAMES, 3, 2)
    eager = m(x, boxes, shapes)
    cm = torch.compile(rt.MultiScaleRoIAlign(NAMES, 3, 2), fullgraph=True)
    got = cm(x, boxes, shapes)
    assert torch.equal(got, eager)
    g = torch.randn(eager.shape, generator=torch.Generator().manual_seed(0))
    for a, b in zip(_grads(eager, x, g), _grads(got, x, g), strict=True):
        assert torch.equal(a, b)
    ep = torch.export.export(m, (x, boxes, shapes))
    targets = [str(n.target) for n in ep.graph.nodes if n.op == "call_function"]
    assert targets.count("roicore.multi_scale_roi_align.default") == 1
    assert not any("nonzero" in t or "item" in t for t in targets)


def test_replace_roi_poolers_swaps_every_torchvision_pooler():
    tv = _tv()
    model = torch.nn.Sequential(
        tv.ops.RoIAlign(7, 0.25, 2, aligned=True),
        torch.nn.Sequential(tv.ops.RoIPool(5, 0.5), torch.nn.ReLU()),
        tv.ops.MultiScaleRoIAlign(["a"], 3, 1),
    )
    x, r = torch.randn(2, 3, 20, 20), _random_rois(10)
    refs = (model[0](x, r), model[1][0](x, r))
    out = rt.replace_roi_poolers(model)
    assert out is model
    assert isinstance(model[0], rt.RoIAlign) and model[0].aligned
    assert isinstance(model[1][0], rt.RoIPool) and isinstance(model[1][1], torch.nn.ReLU)
    assert isinstance(model[2], rt.MultiScaleRoIAlign)
    assert torch.equal(model[0](x, r), refs[0]) and torch.equal(model[1][0](x, r), refs[1])


@pytest.mark.parametrize("builder", ["fasterrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn"])
def test_torchvision_detector_identical_detections(builder):
    tv = _tv()
    torch.manual_seed(0)
    model = getattr(tv.models.detection, builder)(
        weights=None, weights_backbone=None, min_size=320, max_size=512).eval()
    g = torch.Generator().manual_seed(1)
    images = [torch.rand(3, 300, 400, generator=g), torch.rand(3, 260, 380, generator=g)]
    with torch.no_grad():
        ref = model(images)
    swapped = rt.replace_roi_poolers(copy.deepcopy(model))
    assert isinstance(swapped.roi_heads.box_roi_pool, rt.MultiScaleRoIAlign)
    with torch.no_grad():
        got = swapped(images)
    for a, b in zip(ref, got, strict=True):
        assert a.keys() == b.keys() and len(a["boxes"]) > 0
        for k in a:
            assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- bf16, autocast
@pytest.mark.parametrize("fn", [rt.roi_align, rt.roi_pool, rt.roi_warp])
def test_bfloat16_computed_in_float32(fn):
    x = torch.randn(2, 4, 20, 24, generator=torch.Generator().manual_seed(0))
    xb = x.bfloat16().requires_grad_(True)
    r = ROIS.float()
    y = fn(xb, r, 3, 0.5)
    assert y.dtype == torch.bfloat16
    ref = {rt.roi_align: roicore.roi_align, rt.roi_pool: roicore.roi_pool,
           rt.roi_warp: roicore.roi_warp}[fn](xb.detach().float().numpy(), r.numpy(), 3, 0.5)
    assert torch.equal(y, torch.from_numpy(ref).bfloat16())
    y.float().sum().backward()
    assert xb.grad.dtype == torch.bfloat16 and xb.grad.abs().sum() > 0


def test_bfloat16_matches_torchvision_float32():
    tv = _tv()
    x = torch.randn(2, 4, 20, 24, generator=torch.Generator().manual_seed(0)).bfloat16()
    r = ROIS.float()
    ref = tv.ops.roi_align(x.float(), r, 3, 0.5, 2).bfloat16()
    assert torch.equal(rt.roi_align(x, r, 3, 0.5, 2), ref)


@pytest.mark.parametrize("in_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("rois_dtype", [torch.float32, torch.bfloat16])
def test_autocast_cpu_matches_torchvision(in_dtype, rois_dtype):
    """torchvision's rule: compute in float32, return the input's dtype."""
    tv = _tv()
    x = torch.randn(2, 4, 20, 24, generator=torch.Generator().manual_seed(0)).to(in_dtype)
    r = ROIS.to(rois_dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = tv.ops.roi_align(x, r, 3, 0.5, 2)
        got = rt.roi_align(x, r, 3, 0.5, 2)
        pooled = rt.roi_pool(x, r, 3, 0.5)
    assert got.dtype == ref.dtype == in_dtype and pooled.dtype == in_dtype
    assert torch.equal(got, ref)


def test_autocast_gradient_flows_in_input_dtype():
    x = torch.randn(2, 4, 20, 24, generator=torch.Generator().manual_seed(0))
    xb = x.bfloat16().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = rt.roi_align(xb, ROIS.float(), 3, 0.5, 2)
    y.float().sum().backward()
    ref = roicore.roi_align_backward(np.ones((3, 4, 3, 3), np.float32),
                                     xb.detach().float().numpy(), ROIS.float().numpy(), 3, 0.5, 2)
    assert xb.grad.dtype == torch.bfloat16
    assert torch.equal(xb.grad, torch.from_numpy(ref).bfloat16())


def test_benchmark_script_runs_and_checks_identity(capsys):
    _tv()
    from benchmarks import torch_multiscale

    torch_multiscale.main(["--rounds", "1", "--threads", "1", "--height", "64", "--width", "96",
                           "--channels", "4", "--boxes", "20"])
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if not line.startswith("#")][1:]
    assert [r[:2] for r in rows] == [["1", "forward"], ["1", "backward"]]
    assert all(r[-1].endswith("x") for r in rows)


def test_multiscale_same_bits_for_any_thread_count():
    x, boxes, shapes = _fpn(7, H=256, W=320, C=8, n_boxes=80)
    outs, grads = [], []
    for n in (1, 2, 3):
        y = rt.MultiScaleRoIAlign(NAMES, 7, 2, num_threads=n)(x, boxes, shapes)
        g = torch.ones_like(y)
        outs.append(y)
        grads.append(_grads(y, x, g))
    for y, gs in zip(outs[1:], grads[1:], strict=True):
        assert torch.equal(y, outs[0])
        assert all(torch.equal(a, b) for a, b in zip(gs, grads[0], strict=True))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_multiscale_autocast_matches_torchvision(dtype):
    tv = _tv()
    x, boxes, shapes = _fpn(8, H=128, W=192, C=4, n_boxes=30)
    x = OrderedDict((k, v.detach().to(dtype).requires_grad_(True)) for k, v in x.items())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ref = tv.ops.MultiScaleRoIAlign(NAMES, 5, 2)(x, boxes, shapes)
        got = rt.MultiScaleRoIAlign(NAMES, 5, 2)(x, boxes, shapes)
    assert got.dtype == ref.dtype == dtype
    assert torch.equal(got, ref)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(0)).to(dtype)
    for a, b in zip(_grads(ref, x, g), _grads(got, x, g), strict=True):
        assert a.dtype == b.dtype == dtype and torch.equal(a, b)
