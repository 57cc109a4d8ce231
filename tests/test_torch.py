"""roicore.torch: autograd (gradcheck), torchvision-style modules, box formats,
and a tiny detector head that trains through RoIAlign."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch not installed (pip install 'roicore[torch]')")

import roicore  # noqa: E402
from roicore.torch import RoIAlign, RoIPool, RoIWarp, roi_align, roi_pool, roi_warp  # noqa: E402

DEVICES = ["cpu"]
try:
    import cupy  # noqa: F401

    if torch.cuda.is_available():
        DEVICES.append(pytest.param("cuda", marks=pytest.mark.gpu))
except ImportError:
    pass


# gradcheck makes ~2 calls per input element: one OpenMP thread keeps each call
# in the microseconds even on a busy machine (a parallel region's wake-up is not).
ONE = {"num_threads": 1}


def _distinct(shape, seed=0, dtype=torch.float64, device="cpu"):
    """Distinct, well separated values: max modes have no ties for gradcheck."""
    g = torch.Generator().manual_seed(seed)
    n = int(np.prod(shape))
    vals = torch.randperm(n, generator=g).to(dtype) / n + 0.01 * torch.rand(n, generator=g)
    return vals.reshape(shape).to(dtype).to(device)


ROIS = torch.tensor(
    [[0, 1.3, 1.1, 6.2, 7.7], [1, 0.5, 2.0, 9.0, 8.0], [0, -1.5, 3.2, 4.4, 9.6]],
    dtype=torch.float64,
)

CASES = [
    ("pool", roi_pool, {}),
    ("pool", roi_pool, {"bins": "equal"}),
    ("pool", roi_pool, {"spatial_scale": 0.5}),
    ("align", roi_align, {}),
    ("align", roi_align, {"sampling_ratio": 2, "aligned": True}),
    ("align", roi_align, {"sampling_ratio": 3, "spatial_scale": 0.5}),
    ("align", roi_align, {"mode": "max", "sampling_ratio": 2}),
    ("align", roi_align, {"mode": "max", "aligned": True}),
    ("warp", roi_warp, {}),
    ("warp", roi_warp, {"sampling_ratio": 2, "mode": "max"}),
    ("warp", roi_warp, {"compat": "mnc"}),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "fn", "kw"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_gradcheck(name, fn, kw, device):
    x = _distinct((2, 3, 10, 11), device=device).requires_grad_(True)
    r = ROIS.to(device)
    assert torch.autograd.gradcheck(lambda t: fn(t, r, (3, 2), **kw, **ONE), (x,),
                                    eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_nhwc(device):
    x = _distinct((2, 10, 11, 3), device=device).requires_grad_(True)
    r = ROIS.to(device)
    for fn in (roi_pool, roi_align, roi_warp):
        assert torch.autograd.gradcheck(lambda t, fn=fn: fn(t, r, 2, layout="NHWC", **ONE), (x,))


@pytest.mark.parametrize(("name", "fn", "kw"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_matches_numpy_api(name, fn, kw):
    x = _distinct((2, 3, 10, 11), dtype=torch.float32)
    ref = {"pool": roicore.roi_pool, "align": roicore.roi_align, "warp": roicore.roi_warp}[name]
    y = fn(x, ROIS.float(), 3, **kw)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.float32
    np.testing.assert_array_equal(y.numpy(), ref(x.numpy(), ROIS.float().numpy(), 3, **kw))


def test_backward_matches_numpy_api():
    x = _distinct((2, 3, 10, 11)).requires_grad_(True)
    y = roi_align(x, ROIS, 3, 0.5, 2)
    g = torch.rand_like(y)
    y.backward(g)
    ref = roicore.roi_align_backward(g.numpy(), x.detach().numpy(), ROIS.numpy(), 3, 0.5, 2)
    np.testing.assert_array_equal(x.grad.numpy(), ref)


def test_no_grad_for_rois_and_no_graph_without_grad():
    x = _distinct((2, 3, 10, 11)).requires_grad_(True)
    r = ROIS.clone().requires_grad_(True)
    y = roi_align(x, r, 2)
    assert y.requires_grad and y.grad_fn is not None
    y.sum().backward()
    assert r.grad is None and x.grad is not None
    with torch.no_grad():
        assert not roi_align(x, r, 2).requires_grad
    assert roi_pool(x.detach(), r, 2).grad_fn is None


def test_boxes_list_like_torchvision():
    x = _distinct((2, 3, 10, 11))
    boxes = [ROIS[ROIS[:, 0] == i, 1:] for i in range(2)]
    order = torch.argsort(ROIS[:, 0], stable=True)
    for fn in (roi_pool, roi_align, roi_warp):
        torch.testing.assert_close(fn(x, boxes, 2), fn(x, ROIS[order], 2), rtol=0, atol=0)
    # one list entry per image; an image may have no boxes
    y = roi_align(x, [boxes[0], torch.zeros(0, 4, dtype=torch.float64)], 2)
    assert y.shape == (2, 3, 2, 2)
    # integer boxes are fine
    y = roi_pool(x, [torch.tensor([[0, 0, 4, 4]]), torch.tensor([[1, 1, 5, 5]])], 2)
    assert y.shape == (2, 3, 2, 2)
    with pytest.raises(ValueError, match=r"`rois\[0\]` must have shape \(K_i, 4\)"):
        roi_align(x, [ROIS], 2)
    with pytest.raises(TypeError, match="`rois` must be a Tensor"):
        roi_align(x, ROIS.numpy(), 2)


def test_modules_take_torchvision_arguments():
    m = RoIAlign(7, 0.25, 2, True)
    assert (m.output_size, m.spatial_scale, m.sampling_ratio, m.aligned) == (7, 0.25, 2, True)
    assert repr(m) == "RoIAlign(output_size=7, spatial_scale=0.25, sampling_ratio=2, aligned=True)"
    m = RoIAlign(output_size=(7, 7), spatial_scale=1 / 16, sampling_ratio=-1, aligned=False)
    assert m.output_size == (7, 7)
    p = RoIPool(7, 0.5)
    assert repr(p) == "RoIPool(output_size=7, spatial_scale=0.5)"
    p = RoIPool(output_size=(3, 3), spatial_scale=1.0)
    w = RoIWarp(7, 0.5, 2, compat="mnc")
    assert "compat='mnc'" in repr(w)
    assert repr(RoIAlign(2, mode="max")).endswith("mode='max')")
    assert repr(RoIPool(2, bins="equal")).endswith("bins='equal')")
    # no parameters, so they drop into any nn.Sequential / state_dict without noise
    assert not list(m.parameters()) and m.state_dict() == {}


def test_modules_forward_and_backward():
    x = _distinct((2, 3, 10, 11)).requires_grad_(True)
    boxes = [ROIS[ROIS[:, 0] == i, 1:] for i in range(2)]
    for mod, fn, kw in [
        (RoIAlign(3, 0.5, 2, True, mode="max"), roi_align,
         dict(spatial_scale=0.5, sampling_ratio=2, aligned=True, mode="max")),
        (RoIPool(3, 0.5, bins="equal"), roi_pool, dict(spatial_scale=0.5, bins="equal")),
        (RoIWarp(3, 0.5, 2), roi_warp, dict(spatial_scale=0.5, sampling_ratio=2)),
    ]:
        y = mod(x, boxes)
        torch.testing.assert_close(y, fn(x, boxes, 3, **kw), rtol=0, atol=0)
        (gx,) = torch.autograd.grad(y.square().sum(), x)
        assert gx.shape == x.shape and gx.abs().sum() > 0


def test_dtypes_and_noncontiguous():
    x64 = _distinct((2, 3, 10, 11))
    for dt in (torch.float16, torch.float32, torch.float64):
        x = x64.to(dt).requires_grad_(True)
        y = roi_align(x, ROIS, 2)
        assert y.dtype == dt
        y.sum().backward()
        assert x.grad.dtype == dt
    xt = x64.transpose(2, 3).contiguous().transpose(2, 3).requires_grad_(True)
    assert not xt.is_contiguous()
    torch.testing.assert_close(roi_align(xt, ROIS, 2), roi_align(x64, ROIS, 2), rtol=0, atol=0)
    roi_align(xt, ROIS, 2).sum().backward()


def test_deterministic_flag_accepted():
    x = _distinct((2, 3, 10, 11)).requires_grad_(True)
    roi_align(x, ROIS, 2, deterministic=True).sum().backward()
    g1 = x.grad.clone()
    x.grad = None
    roi_align(x, ROIS, 2).sum().backward()
    torch.testing.assert_close(g1, x.grad, rtol=0, atol=0)


def test_matches_torchvision_if_installed():
    tv = pytest.importorskip("torchvision.ops", reason="torchvision not installed")
    x = torch.rand(2, 4, 13, 15)
    r = ROIS.float()
    torch.testing.assert_close(roi_align(x, r, 3, 0.5, 2, True),
                               tv.roi_align(x, r, 3, 0.5, 2, True))
    torch.testing.assert_close(roi_pool(x, r, 3, 0.5), tv.roi_pool(x, r, 3, 0.5))


# ---------------------------------------------------------------- training
def _detection_data(n_images=8, boxes_per_image=6, size=32, seed=0):
    """Random feature maps with a bright 8x8 blob in one of 3 channels under
    some boxes; the label of a box is the blob's channel, or 3 for background."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n_images, 3, size, size, generator=g) * 0.5
    boxes, labels = [], []
    for i in range(n_images):
        bi = []
        for _ in range(boxes_per_image):
            x0, y0 = (int(v) for v in torch.randint(0, size - 10, (2,), generator=g))
            label = int(torch.randint(0, 4, (1,), generator=g))
            if label < 3:
                x[i, label, y0 + 1:y0 + 9, x0 + 1:x0 + 9] += 1.0
            bi.append([x0, y0, x0 + 10, y0 + 10])
            labels.append(label)
        boxes.append(torch.tensor(bi, dtype=torch.float32))
    return x, boxes, torch.tensor(labels)


class TinyHead(torch.nn.Module):
    def __init__(self, pool: torch.nn.Module, out: int = 4):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.pool = pool
        self.fc = torch.nn.Linear(8 * out * out, 4)

    def forward(self, x, boxes):
        f = torch.relu(self.conv(x))
        return self.fc(self.pool(f, boxes).flatten(1))


@pytest.mark.parametrize(
    "pool",
    [RoIAlign(4, 1.0, 2, aligned=True), RoIPool(4, 1.0), RoIWarp(4, 1.0, 2),
     RoIAlign(4, 1.0, 2, mode="max")],
    ids=["align", "pool", "warp", "align-max"],
)
def test_tiny_detector_head_trains(pool):
    torch.manual_seed(0)
    x, boxes, labels = _detection_data()
    model = TinyHead(pool)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x, boxes), labels)
        loss.backward()
        assert model.conv.weight.grad.abs().sum() > 0  # gradient went through the RoI op
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def test_docstring_examples():
    import doctest

    import roicore.torch

    res = doctest.testmod(roicore.torch, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 0
