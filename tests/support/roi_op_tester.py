"""``RoIOpTester``, the test body every operator shares (the table it runs is optable.py).

In the style of torchvision's ``test/test_ops.py::RoIOpTester``: one class holds each property
once (oracle parity of the API forms, tiny maps, odd scales, gradients, thread counts,
layouts, validation, empty input, memory layouts); ``tests/test_roi_pool.py``,
``test_roi_align.py`` and ``test_roi_warp.py`` subclass it with ``OP = "pool" | "align" |
"warp"`` and add what only that operator has.  A method decorated with ``@over(argnames,
table)`` runs for the rows of ``table`` that belong to the class's operator (a row's name is
``"<op>"`` or ``"<op>_<variant>"``), so every variant of the table runs exactly once, in its
operator's file.

The axes of the table: ``BACKENDS`` x ``DTYPES`` x ``LAYOUTS`` x ``CONTIGUITY``
(``test_backend_dtype_layout_contiguity``); the CUDA backend runs where CuPy sees a GPU, and
``tests/test_gpu.py`` checks it further against the CPU backend bit for bit.

Expected values come from the NumPy oracle (``reference.py``), finite differences, the adjoint
identity or roicore itself under another thread count / layout / memory layout.
"""

import numpy as np
import pytest
import reference as ref
from cases import C, H, N, W, case_id, case_rng, make_input, make_rois
from optable import (
    ADJOINT_CASES,
    API_VARIANTS,
    AXES_VARIANTS,
    BACKENDS,
    BWD,
    CONTIGUITY,
    DTYPES,
    FWD,
    GRAD_ROIS,
    GRAD_SCALE,
    GRADIENT_VARIANTS,
    LAYOUTS,
    MAX_TIE_CASES,
    ODD_SCALE_VARIANTS,
    OPS,
    T_X,
    THREAD_VARIANTS,
    R,
    X,
    assert_exact,
    assert_matches,
    call_in_layout,
    cuda_or_none,
    distinct_input,
    family,
    from_nhwc,
    make_grad,
    over,
    raises,
    random_rois,
    row_id,
    run_both_layouts,
    seeded_rng,
    thread_bwd,
    thread_fwd,
    to_nhwc,
    with_contiguity,
)

import roicore


class RoIOpTester:
    """Tests every operator must pass; subclasses set ``OP``."""

    OP: str

    def pytest_generate_tests(self, metafunc):
        spec = getattr(metafunc.function, "_op_table", None)
        if spec is None:
            return
        argnames, table = spec
        rows = [r for r in table if family(r) == self.OP]
        metafunc.parametrize(argnames, rows, ids=[row_id(r, i) for i, r in enumerate(rows)])

    @pytest.fixture
    def op(self):
        return self.OP

    # ------------------------------------------------ backend x dtype x layout x contiguity

    @pytest.mark.parametrize("contiguity", CONTIGUITY)
    @pytest.mark.parametrize("layout", LAYOUTS)
    @pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
    @pytest.mark.parametrize("backend", BACKENDS)
    def test_backend_dtype_layout_contiguity(self, backend, dtype, layout, contiguity):
        xp = None
        if backend == "cuda":
            xp = cuda_or_none()
            if xp is None:
                pytest.skip("CUDA backend: needs CuPy and a CUDA device")
        o, kw = OPS[self.OP], AXES_VARIANTS[self.OP]
        rng = case_rng("axes", self.OP, dtype.__name__, layout, contiguity)
        x = make_input(rng, dtype)
        rois = make_rois(rng, 0.5)
        exp = o.ref_fwd(x, rois, (3, 2), 0.5, **kw)
        g = make_grad(rng, exp.shape, dtype)
        exp_grad = o.ref_bwd(g, x, rois, (3, 2), 0.5, **kw)
        xl, gl = (x, g) if layout == "NCHW" else (to_nhwc(x), to_nhwc(g))
        xl, gl = with_contiguity(xl, contiguity), with_contiguity(gl, contiguity)
        if xp is not None:
            xl, gl, rois = xp.asarray(xl), xp.asarray(gl), xp.asarray(rois)
        got = o.fwd(xl, rois, (3, 2), 0.5, layout=layout, **kw)
        got_grad = o.bwd(gl, xl, rois, (3, 2), 0.5, layout=layout, **kw)
        if xp is not None:
            got, got_grad = xp.asnumpy(got), xp.asnumpy(got_grad)
        if layout == "NHWC":
            got, got_grad = from_nhwc(got), from_nhwc(got_grad)
        what = f"{backend} {layout} {contiguity}"
        if self.OP == "pool":
            assert_exact(got, exp, dtype, what + " forward")
        else:
            assert_matches(got, exp, dtype, what + " forward")
        assert_matches(got_grad, exp_grad, dtype, what + " backward")

    # ------------------------------------------------ API forms (from test_parity.py)

    @over("variant", list(API_VARIANTS))
    def test_rois_as_list_and_int_output_size(self, variant):
        (fwd, bwd, rfwd, rbwd), kw = OPS[family(variant)], API_VARIANTS[variant]
        op = variant
        rng = case_rng("list", op)
        x = make_input(rng, np.float64)
        rois = make_rois(rng, 0.5, k=7)
        rois = rois[np.argsort(rois[:, 0], kind="stable")]
        as_list = [rois[rois[:, 0] == b, 1:] for b in range(N)]
        got_arr = fwd(x, rois, 3, 0.5, **kw)
        got_list = fwd(x, as_list, 3, 0.5, **kw)
        np.testing.assert_array_equal(got_list, got_arr)
        assert got_arr.shape == (7, C, 3, 3)
        assert_matches(got_arr, rfwd(x, rois, (3, 3), 0.5, **kw), np.float64, op)
        g = make_grad(rng, got_arr.shape, np.float64)
        gl = bwd(g, x, as_list, (3, 3), 0.5, **kw)
        assert_matches(gl, rbwd(g, x, rois, 3, 0.5, **kw), np.float64, op + " backward")

    @pytest.mark.parametrize("shape", [(1, 2, 1, 7), (1, 2, 6, 1), (2, 1, 1, 1), (1, 1, 2, 2)])
    @over("variant", list(API_VARIANTS))
    @pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=case_id)
    def test_tiny_maps(self, variant, shape, dtype):
        # 1-pixel-high / 1-pixel-wide maps exercise the last-row / last-column clamp everywhere
        (fwd, bwd, rfwd, rbwd), kw = OPS[family(variant)], API_VARIANTS[variant]
        op = variant
        rng = case_rng("tiny", op, shape, dtype.__name__)
        x = make_input(rng, dtype, shape)
        rois = make_rois(rng, 1.0, n_batch=shape[0], h=shape[2], w=shape[3], k=12)
        got = fwd(x, rois, (3, 2), **kw)
        exp = rfwd(x, rois, (3, 2), **kw)
        if fwd is roicore.roi_pool:
            assert_exact(got, exp, dtype, op)
        else:
            assert_matches(got, exp, dtype, op)
        g = make_grad(rng, got.shape, dtype)
        assert_matches(
            bwd(g, x, rois, (3, 2), **kw), rbwd(g, x, rois, (3, 2), **kw), dtype, op + " backward"
        )

    @over("variant", list(API_VARIANTS))
    def test_backward_deterministic_across_threads(self, variant):
        # deterministic=True: bit-identical gradients whatever the thread count
        (fwd, bwd, _, _), kw = OPS[family(variant)], API_VARIANTS[variant]
        rng = case_rng("det", variant)
        x = make_input(rng, np.float32, (2, 3, 12, 13))
        rois = make_rois(rng, 1.0, h=12, w=13, k=12)
        rois = np.concatenate([rois, rois, rois[:, :] + [0, 0.25, 0.5, 0.25, 0.5]])
        g = make_grad(rng, (len(rois), 3, 3, 2), np.float32)
        ref_grad = bwd(g, x, rois, (3, 2), deterministic=True, num_threads=1, **kw)
        for nt in (2, 3, None):
            got = bwd(g, x, rois, (3, 2), deterministic=True, num_threads=nt, **kw)
            np.testing.assert_array_equal(got, ref_grad, err_msg=f"num_threads={nt}")
        # the forward does not depend on the thread count either
        f1 = fwd(x, rois, (3, 2), num_threads=1, **kw)
        np.testing.assert_array_equal(fwd(x, rois, (3, 2), num_threads=2, **kw), f1)

    @pytest.mark.parametrize("scale", [1.0 / 3, 0.3, 0.7], ids=case_id)
    @over("variant", list(ODD_SCALE_VARIANTS))
    @pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
    def test_inexact_spatial_scale(self, dtype, variant, scale):
        # spatial_scale is not representable: it must be rounded to T before use (x1 * T(s))
        (fwd, bwd, rfwd, rbwd), kw = OPS[family(variant)], ODD_SCALE_VARIANTS[variant]
        op = variant
        rng = case_rng("odd-scale", dtype.__name__, op, scale)
        x = make_input(rng, dtype)
        rois = make_rois(rng, scale)
        # coordinates whose product with the scale lands (nearly) on .5 in feature space
        rois[:4, 1:] = (np.floor(rois[:4, 1:] * scale) + 0.5) / scale
        exp = rfwd(x, rois, (2, 3), scale, **kw)
        got = fwd(x, rois, (2, 3), scale, **kw)
        if fwd is roicore.roi_pool:
            assert_exact(got, exp, dtype, op)
        else:
            assert_matches(got, exp, dtype, op)
        g = make_grad(rng, exp.shape, dtype)
        assert_matches(
            bwd(g, x, rois, (2, 3), scale, **kw),
            rbwd(g, x, rois, (2, 3), scale, **kw),
            dtype,
            op + " backward",
        )

    # ------------------------------------------------ gradients (from test_gradients.py)

    @pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
    @over("variant", list(GRADIENT_VARIANTS))
    def test_finite_differences(self, variant, layout):
        (fwd, bwd, _, _), kw = OPS[family(variant)], GRADIENT_VARIANTS[variant]
        rng = seeded_rng("fd", variant)
        x = distinct_input(rng, (2, 2, 5, 7))
        out_size = (3, 2)
        ROIS, SCALE = GRAD_ROIS, GRAD_SCALE

        def loss(xv):  # single-threaded: hundreds of tiny calls
            out = call_in_layout(
                lambda a: fwd(a, ROIS, out_size, SCALE, layout=layout, num_threads=1, **kw),
                layout,
                xv,
            )
            return float(np.vdot(g, out))

        out0 = call_in_layout(lambda a: fwd(a, ROIS, out_size, SCALE, layout=layout, **kw),
                              layout, x)
        assert out0.shape == (len(ROIS), 2, 3, 2)
        g = rng.standard_normal(out0.shape)
        analytic = call_in_layout(
            lambda gg, xx: bwd(gg, xx, ROIS, out_size, SCALE, layout=layout, **kw), layout, g, x
        )
        assert analytic.shape == x.shape and analytic.dtype == np.float64

        eps = 1e-6
        f0 = loss(x)
        checked = nonzero_checked = 0
        errors = []
        for idx in np.ndindex(*x.shape):
            xp = x.copy()
            xm = x.copy()
            xp[idx] += eps
            xm[idx] -= eps
            fp, fm = loss(xp), loss(xm)
            if abs((fp - f0) - (f0 - fm)) > 1e-9:
                continue  # the perturbation changes a max winner: not differentiable here
            checked += 1
            fd = (fp - fm) / (2 * eps)
            nonzero_checked += analytic[idx] != 0
            if abs(fd - analytic[idx]) > 1e-7 + 1e-6 * abs(fd):
                errors.append((idx, fd, analytic[idx]))
        assert not errors, f"(index, finite difference, backward): {errors[:8]}"
        assert checked >= 0.9 * x.size, (checked, x.size)
        assert nonzero_checked >= 10, nonzero_checked  # the check is not vacuous

    @pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
    @over(("variant", "sampling_ratio", "scale"), ADJOINT_CASES)
    def test_adjoint_identity(self, variant, sampling_ratio, scale, layout):
        (fwd, bwd, _, _), kw = OPS[family(variant)], GRADIENT_VARIANTS[variant]
        kw = dict(kw)
        if fwd is not roicore.roi_pool:
            kw["sampling_ratio"] = sampling_ratio
        rng = seeded_rng("adjoint", variant, sampling_ratio, scale)
        n, c, h, w = 2, 3, 9, 11
        x = rng.standard_normal((n, c, h, w))
        rois = random_rois(rng, 12, n, h, w, scale)
        out = call_in_layout(lambda a: fwd(a, rois, (2, 3), scale, layout=layout, **kw), layout, x)
        g = rng.standard_normal(out.shape)
        gi = call_in_layout(lambda gg, a: bwd(gg, a, rois, (2, 3), scale, layout=layout, **kw),
                   layout, g, x)
        lhs = float(np.vdot(gi, x))
        rhs = float(np.vdot(g, out))
        magnitude = float(np.vdot(np.abs(g), np.abs(out)))
        assert magnitude > 0
        assert abs(lhs - rhs) <= 1e-10 * max(abs(rhs), 1e-3 * magnitude), (lhs, rhs)

    # ------------------------------------------------ threads (from test_threads.py)

    @over(("op_", "kw"), THREAD_VARIANTS)
    @pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_identical_across_thread_counts(self, op_, kw, layout, dtype):
        op = op_
        x = T_X.astype(dtype)
        if layout == "NHWC":
            x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        outs = [thread_fwd(op, x, layout, nt, kw) for nt in (1, 2, 4)]
        g = np.random.default_rng(1).standard_normal(outs[0].shape).astype(dtype)
        grads = [thread_bwd(op, g, x, layout, nt, kw) for nt in (1, 2, 4)]
        for o in outs[1:]:
            assert np.array_equal(o, outs[0])
        for gr in grads[1:]:
            assert np.array_equal(gr, grads[0])
        # the gradient is not trivially zero (the test could fail)
        assert np.abs(grads[0]).sum() > 0

    @over(("op_", "kw"), THREAD_VARIANTS)
    def test_nhwc_equals_nchw_transposed(self, op_, kw):
        op, X = op_, T_X
        nchw = thread_fwd(op, X, "NCHW", 2, kw)
        nhwc = thread_fwd(op, np.ascontiguousarray(X.transpose(0, 2, 3, 1)), "NHWC", 2, kw)
        assert np.array_equal(nhwc, nchw.transpose(0, 2, 3, 1))
        g = np.random.default_rng(2).standard_normal(nchw.shape).astype(np.float32)
        gc = thread_bwd(op, g, X, "NCHW", 2, kw)
        gl = thread_bwd(op, np.ascontiguousarray(g.transpose(0, 2, 3, 1)),
                    np.ascontiguousarray(X.transpose(0, 2, 3, 1)), "NHWC", 2, kw)
        assert np.array_equal(gl, gc.transpose(0, 2, 3, 1))

    # ------------------------------------------------ validation (from test_validation.py)

    def test_input_rank(self, op):
        raises(ValueError, "`input` must be a 4-D array", FWD[op], X[0], R)
        raises(ValueError, "`input` must be a 4-D array", FWD[op], X[None], R)

    @pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, np.complex64, np.bool_])
    def test_input_dtype(self, op, dtype):
        raises(TypeError, "`input` must have a floating dtype", FWD[op], X.astype(dtype), R)

    def test_input_type(self, op):
        raises(TypeError, "`input` must be a numpy.ndarray", FWD[op], X.tolist(), R)

    def test_rois_shape(self, op):
        raises(ValueError, r"`rois` must have shape \(K, 5\).*needs the batch index",
                FWD[op], X, R[:, 1:])
        raises(ValueError, r"`rois` must have shape \(K, 5\)", FWD[op], X, R[0])
        raises(ValueError, r"`rois` must have shape \(K, 5\)", FWD[op], X, R[:, :3])

    def test_rois_list_form(self, op):
        good = FWD[op](X, [R[:1, 1:], R[1:, 1:]])
        np.testing.assert_array_equal(good, FWD[op](X, R))
        raises(ValueError, "one \\(K_i, 4\\) array per image: input has N=2", FWD[op], X,
                [R[:, 1:]])
        raises(ValueError, r"`rois\[1\]` must have shape \(K_i, 4\)", FWD[op], X,
                [R[:1, 1:], R[1:]])

    def test_rois_dtype(self, op):
        raises(TypeError, "`rois` must hold real numbers", FWD[op], X, R.astype(np.complex64))
        raises(TypeError, "`rois` must hold real numbers", FWD[op], X, R.astype(bool))
        # integer boxes are fine
        np.testing.assert_array_equal(FWD[op](X, R.astype(np.int64)), FWD[op](X, R))

    @pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
    @pytest.mark.parametrize("col", [1, 2, 3, 4])
    def test_rois_not_finite(self, op, bad, col):
        r = R.copy()
        r[1, col] = bad
        raises(ValueError, f"`rois` must be finite: row 1 column {col}", FWD[op], X, r)

    def test_batch_index(self, op):
        for b, msg in [(2, r"must be in \[0, N\) = \[0, 2\); row 1 has 2"),
                       (-1, r"must be in \[0, N\).*row 1 has -1"),
                       (0.5, "must be integral; row 1 has 0.5"),
                       (np.nan, "must be finite")]:
            r = R.copy()
            r[1, 0] = b
            raises(ValueError, msg, FWD[op], X, r)

    @pytest.mark.parametrize("size", [0, -1, (2, 0), (0, 2), 1 << 21])
    def test_output_size_range(self, op, size):
        raises(ValueError, "`output_size` must be", FWD[op], X, R, size)

    @pytest.mark.parametrize("size", [2.0, (2, 2.5), "2", True, None])
    def test_output_size_type(self, op, size):
        raises(TypeError, "`output_size` must be an integer", FWD[op], X, R, size)

    def test_output_size_pair_length(self, op):
        raises(ValueError, "pair", FWD[op], X, R, (2, 2, 2))

    @pytest.mark.parametrize("scale", [0.0, -1.0, np.nan, np.inf])
    def test_spatial_scale_value(self, op, scale):
        raises(ValueError, "`spatial_scale` must be finite and > 0", FWD[op], X, R, 2, scale)

    @pytest.mark.parametrize("scale", ["1", None, True, 1j])
    def test_spatial_scale_type(self, op, scale):
        raises(TypeError, "`spatial_scale` must be a real number", FWD[op], X, R, 2, scale)

    def test_layout(self, op):
        raises(ValueError, "`layout` must be one of", FWD[op], X, R, layout="CHW")
        raises(ValueError, "`layout` must be one of", FWD[op], X, R, layout="nchw")

    @pytest.mark.parametrize("n", [0, -2])
    def test_num_threads_value(self, op, n):
        raises(ValueError, "`num_threads` must be None or an integer >= 1", FWD[op], X, R,
                num_threads=n)

    def test_num_threads_type(self, op):
        raises(TypeError, "`num_threads` must be an integer", FWD[op], X, R, num_threads=2.0)

    def test_grad_output_shape(self, op):
        out = FWD[op](X, R)
        raises(ValueError, "`grad_output` must have the forward output's shape", BWD[op],
                out[:1], X, R)
        raises(ValueError, "`grad_output` must have the forward output's shape", BWD[op],
                out.transpose(0, 2, 3, 1), X, R)
        raises(TypeError, "`grad_output` must have a floating dtype", BWD[op],
                out.astype(np.int32), X, R)

    def test_backward_validates_like_forward(self, op):
        out = FWD[op](X, R)
        r = R.copy()
        r[0, 0] = 5
        raises(ValueError, "batch index", BWD[op], out, X, r)
        raises(ValueError, "`spatial_scale`", BWD[op], out, X, R, 2, -1.0)

    def test_out_argument(self, op):
        ref = FWD[op](X, R)
        buf = np.full(ref.shape, 7.0, np.float32)
        res = FWD[op](X, R, out=buf)
        assert res is buf
        np.testing.assert_array_equal(buf, ref)
        raises(ValueError, "`out` must have shape", FWD[op], X, R, out=buf[:1])
        raises(ValueError, "`out` must have shape", FWD[op], X, R, out=buf.astype(np.float64))
        raises(ValueError, "`out` must be C-contiguous and writeable", FWD[op], X, R,
                out=np.asfortranarray(buf))

    # ------------------------------------------------ empty inputs

    @pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
    @pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
    def test_empty_rois(self, op, layout, dtype):
        x = X.astype(dtype)
        if layout == "NHWC":
            x = x.transpose(0, 2, 3, 1)
        r = np.zeros((0, 5), np.float32)
        out = FWD[op](x, r, (3, 2), layout=layout)
        expect = (0, 3, 2, 3) if layout == "NHWC" else (0, 3, 3, 2)
        assert out.shape == expect and out.dtype == dtype
        g = BWD[op](out, x, r, (3, 2), layout=layout)
        assert g.shape == x.shape and g.dtype == dtype and not g.any()
        # list form with empty per-image arrays
        out2 = FWD[op](x, [np.zeros((0, 4)), np.zeros((0, 4))], (3, 2), layout=layout)
        assert out2.shape == expect

    def test_empty_channels_and_map(self, op):
        out = FWD[op](X[:, :0], R)
        assert out.shape == (2, 0, 2, 2)
        z = FWD[op](np.zeros((2, 3, 0, 5), np.float32), R)
        assert z.shape == (2, 3, 2, 2) and not z.any()
        g = BWD[op](np.ones((2, 3, 2, 2), np.float32), np.zeros((2, 3, 5, 0), np.float32), R)
        assert g.shape == (2, 3, 5, 0)

    def test_empty_batch(self, op):
        out = FWD[op](np.zeros((0, 3, 4, 4), np.float32), np.zeros((0, 5)))
        assert out.shape == (0, 3, 2, 2)

    # ------------------------------------------------ odd memory layouts

    def test_noncontiguous_fortran_readonly(self, op):
        ref = FWD[op](X, R)
        f = np.asfortranarray(X)
        np.testing.assert_array_equal(FWD[op](f, R), ref)
        big = np.zeros((2, 6, 8, 18), np.float32)
        big[:, ::2, :, ::2] = X
        np.testing.assert_array_equal(FWD[op](big[:, ::2, :, ::2], R), ref)
        ro = X.copy()
        ro.flags.writeable = False
        rr = R.copy()
        rr.flags.writeable = False
        np.testing.assert_array_equal(FWD[op](ro, rr), ref)
        np.testing.assert_array_equal(FWD[op](X, np.asfortranarray(R)), ref)
        g = np.ones_like(ref)
        np.testing.assert_array_equal(BWD[op](np.asfortranarray(g), f, R), BWD[op](g, X, R))


class SampledOpTester(RoIOpTester):
    """What RoI Align and RoI Warp share beyond the common tests: sampling and max mode."""

    @pytest.mark.parametrize("sr", [1.5, 2.0, "2", None, True])
    def test_sampling_ratio_type(self, op, sr):
        raises(TypeError, "`sampling_ratio` must be an integer", FWD[op], X, R, 2, 1.0,
                sampling_ratio=sr)

    def test_mode(self, op):
        raises(ValueError, "`mode` must be one of", FWD[op], X, R, mode="mean")

    @over(("op_", "sampling_ratio", "aligned"), MAX_TIE_CASES)
    @pytest.mark.parametrize("dtype", DTYPES, ids=case_id)
    def test_max_mode_ties(self, dtype, op_, sampling_ratio, aligned):
        op = op_
        # a map with 3 distinct integer values and integer-ish RoIs: many bilinear samples tie
        # (exactly, or up to an ulp of the same arithmetic); the first in (iy, ix) order must win,
        # which the backward (gradient on the winner's corners only) exposes.
        rng = case_rng("max-ties", dtype.__name__, sampling_ratio, aligned, op)
        x = rng.integers(-1, 2, size=(N, C, H, W)).astype(dtype)
        rois = make_rois(rng, 1.0)
        rois[:6, 1:] = np.round(rois[:6, 1:])
        kw = {"sampling_ratio": sampling_ratio, "mode": "max"}
        if op == "align":
            kw["aligned"] = aligned
            rfwd, rbwd, fwd, bwd = (
                ref.roi_align,
                ref.roi_align_backward,
                roicore.roi_align,
                roicore.roi_align_backward,
            )
        else:
            rfwd, rbwd, fwd, bwd = (
                ref.roi_warp,
                ref.roi_warp_backward,
                roicore.roi_warp,
                roicore.roi_warp_backward,
            )
        exp = rfwd(x, rois, (3, 2), **kw)
        g = make_grad(rng, exp.shape, dtype)
        got, grads = run_both_layouts(fwd, bwd, x, rois, (3, 2), g, **kw)
        assert_matches(got, exp, dtype, "forward")
        exp_grad = rbwd(g, x, rois, (3, 2), **kw)
        for name, got_grad in grads.items():
            assert_matches(got_grad, exp_grad, dtype, f"backward ({name})")
