"""roicore.sklearn.RoIPooler: estimator API, Pipeline, GridSearchCV and a
synthetic region-classification task."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn not installed (pip install 'roicore[sklearn]')")

from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import estimator_checks as ec
from sklearn.utils import get_tags

import roicore
from roicore.sklearn import RoIPooler, one_box_per_sample


def blob_data(n_images=40, size=32, channels=2, seed=0):
    """Noisy feature maps with a bright (+) or dark (-) Gaussian blob in each
    quadrant; one box around each blob, labelled 1 for bright and 0 for dark.
    Blob positions, radii and boxes are jittered, so the label is in the
    content, not in the geometry."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    q = size // 2
    X, y = [], []
    for _ in range(n_images):
        fmap = rng.normal(0, 0.3, (channels, size, size)).astype(np.float32)
        boxes = []
        for oy, ox in [(0, 0), (0, q), (q, 0), (q, q)]:
            cx, cy = ox + q / 2 + rng.uniform(-2, 2), oy + q / 2 + rng.uniform(-2, 2)
            r = rng.uniform(1.5, 2.5)
            label = int(rng.integers(0, 2))
            blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
            fmap += (1.0 if label else -1.0) * blob * rng.uniform(0.8, 1.2, (channels, 1, 1))
            half = 2 * r + rng.uniform(-0.5, 0.5)
            jx, jy = rng.uniform(-1, 1, 2)
            boxes.append([cx - half + jx, cy - half + jy, cx + half + jx, cy + half + jy])
            y.append(label)
        X.append((fmap, np.asarray(boxes, np.float32)))
    return X, np.asarray(y)


# ---------------------------------------------------------------- transform
def test_shape_and_values_match_roicore():
    X, _ = blob_data(n_images=3)
    out = RoIPooler(output_size=(2, 3), sampling_ratio=2).fit_transform(X)
    assert out.shape == (12, 2 * 2 * 3) and out.dtype == np.float32
    fmap, boxes = X[1]
    ref = roicore.roi_align(fmap[None], [boxes], (2, 3), 1.0, 2).reshape(4, -1)
    np.testing.assert_array_equal(out[4:8], ref)


@pytest.mark.parametrize(
    ("params", "fn", "kw"),
    [
        ({"method": "pool", "bins": "equal"}, roicore.roi_pool, {"bins": "equal"}),
        ({"method": "warp", "compat": "mnc"}, roicore.roi_warp, {"compat": "mnc"}),
        ({"method": "align", "aligned": True, "mode": "max", "spatial_scale": 0.5},
         roicore.roi_align, {"aligned": True, "mode": "max", "spatial_scale": 0.5}),
    ],
)
def test_methods(params, fn, kw):
    X, _ = blob_data(n_images=2)
    out = RoIPooler(output_size=3, **params).transform(X)
    ref = np.concatenate([fn(f[None], [b], 3, **kw).reshape(len(b), -1) for f, b in X])
    np.testing.assert_array_equal(out, ref)


def test_stateless_and_inputs():
    X, _ = blob_data(n_images=2)
    p = RoIPooler(output_size=2)
    a = p.transform(X)  # no fit needed
    np.testing.assert_array_equal(a, clone(p).fit(X).transform(X))
    # single box as (4,), empty boxes, integer feature maps, lists as boxes
    fmap = (X[0][0] * 100).astype(np.int32)
    out = p.transform([(fmap, [0, 0, 8, 8]), (fmap, np.zeros((0, 4))), (X[0][0], X[0][1][:1])])
    assert out.shape == (2, 8) and out.dtype == np.float64
    # DLPack arrays (torch CPU) are fine too
    torch = pytest.importorskip("torch", reason="torch not installed")
    Xt = [(torch.from_numpy(f), torch.from_numpy(b)) for f, b in X]
    np.testing.assert_array_equal(p.transform(Xt), a)


def test_errors():
    X, _ = blob_data(n_images=2)
    for params, match in [
        ({"method": "roi"}, "`method` must be one of"),
        ({"output_size": 0}, "`output_size` must be >= 1"),
        ({"spatial_scale": -1.0}, "`spatial_scale` must be finite and > 0"),
        ({"mode": "mean"}, "`mode` must be one of"),
        ({"method": "pool", "bins": "x"}, "`bins` must be one of"),
    ]:
        est = RoIPooler(**params)  # no error at construction (sklearn convention)
        with pytest.raises(ValueError, match=match):
            est.fit(X)
        with pytest.raises(ValueError, match=match):
            est.transform(X)
    p = RoIPooler()
    with pytest.raises(ValueError, match="X is empty"):
        p.transform([])
    with pytest.raises(ValueError, match="not a numeric array"):
        p.transform(np.zeros((3, 8, 8)))
    with pytest.raises(ValueError, match=r"X\[0\] must be a pair"):
        p.transform([X[0][0]])
    with pytest.raises(ValueError, match=r"X\[0\]\[0\] \(feature map\) must have shape"):
        p.transform([(X[0][0][0], X[0][1])])
    with pytest.raises(ValueError, match=r"X\[1\]\[1\] \(boxes\) must have shape"):
        p.transform([X[0], (X[1][0], np.zeros((2, 5)))])
    with pytest.raises(ValueError, match="fitted on 2"):
        RoIPooler().fit(X).transform([(X[0][0][:1], X[0][1])])


def test_feature_names():
    X, _ = blob_data(n_images=1, channels=2)
    p = RoIPooler(output_size=2)
    with pytest.raises(NotFittedError):
        p.get_feature_names_out()
    names = p.fit(X).get_feature_names_out()
    assert list(names[:5]) == ["roialign_c0_y0_x0", "roialign_c0_y0_x1", "roialign_c0_y1_x0",
                               "roialign_c0_y1_x1", "roialign_c1_y0_x0"]
    assert len(names) == p.transform(X).shape[1]


# ---------------------------------------------------------------- estimator API
def test_params_clone_pickle():
    p = RoIPooler(method="pool", output_size=(3, 4), bins="equal")
    assert p.get_params() == {
        "method": "pool", "output_size": (3, 4), "spatial_scale": 1.0, "sampling_ratio": -1,
        "aligned": False, "mode": "avg", "bins": "equal", "compat": None,
    }
    q = clone(p).set_params(method="warp", compat="mnc")
    assert q.method == "warp" and p.method == "pool"
    assert repr(p) == "RoIPooler(bins='equal', method='pool', output_size=(3, 4))"
    X, _ = blob_data(n_images=2)
    r = pickle.loads(pickle.dumps(p.fit(X)))
    np.testing.assert_array_equal(r.transform(X), p.transform(X))


def test_tags():
    tags = get_tags(RoIPooler())
    assert tags.input_tags.two_d_array is False
    assert tags.requires_fit is False
    assert tags.target_tags.required is False


@pytest.mark.parametrize(
    "check",
    [
        ec.check_estimator_cloneable,
        ec.check_estimator_tags_renamed,
        ec.check_valid_tag_types,
        ec.check_estimator_repr,
        ec.check_no_attributes_set_in_init,
        ec.check_parameters_default_constructible,
        ec.check_get_params_invariance,
        ec.check_set_params,
        ec.check_do_not_raise_errors_in_init_or_set_params,
        ec.check_mixin_order,
    ],
    ids=lambda c: c.__name__,
)
def test_sklearn_api_checks(check):
    # the data-driven common checks need 2-D X; these are the ones that do not
    check("RoIPooler", RoIPooler())


def test_check_estimator_skips_non_2d():
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ec.check_estimator(RoIPooler())
    assert any("Can't test estimator RoIPooler" in str(x.message) for x in w)


# ---------------------------------------------------------------- learning
def _pipeline(**kw):
    return Pipeline([
        ("roipooler", RoIPooler(output_size=3, sampling_ratio=2, **kw)),
        ("scale", StandardScaler()),
        ("clf", LogisticRegression(max_iter=1000)),
    ])


def test_pipeline_learns_region_classification():
    X_train, y_train = blob_data(n_images=40, seed=0)
    X_test, y_test = blob_data(n_images=20, seed=1)  # held-out images
    pipe = _pipeline().fit(X_train, y_train)
    acc = pipe.score(X_test, y_test)
    assert acc > 0.9, acc
    assert pipe.predict(X_test).shape == y_test.shape


def test_pipeline_with_make_pipeline_and_pool():
    X_train, y_train = blob_data(n_images=30, seed=2)
    X_test, y_test = blob_data(n_images=15, seed=3)
    pipe = make_pipeline(RoIPooler(method="pool", output_size=2), StandardScaler(),
                         LogisticRegression(max_iter=1000))
    assert pipe.fit(X_train, y_train).score(X_test, y_test) > 0.9


def test_one_box_per_sample():
    X, y = blob_data(n_images=3)
    Xb, yb, groups = one_box_per_sample(X, y)
    assert len(Xb) == len(yb) == len(groups) == 12
    assert list(groups) == [0] * 4 + [1] * 4 + [2] * 4
    assert Xb[5][0] is X[1][0]  # feature maps shared, not copied
    p = RoIPooler(output_size=2)
    np.testing.assert_array_equal(p.transform(Xb), p.transform(X))
    with pytest.raises(ValueError, match="one label per box"):
        one_box_per_sample(X, y[:-1])


def test_grid_search_over_boxes_grouped_by_image():
    X, y = blob_data(n_images=30, seed=4)
    Xb, yb, groups = one_box_per_sample(X, y)
    grid = GridSearchCV(
        _pipeline(),
        {"roipooler__method": ["align", "pool"], "roipooler__output_size": [1, 3]},
        cv=GroupKFold(n_splits=3),
    )
    grid.fit(Xb, yb, groups=groups)
    assert set(grid.best_params_) == {"roipooler__method", "roipooler__output_size"}
    assert grid.best_score_ > 0.9
    X_test, y_test = blob_data(n_images=10, seed=5)
    assert grid.score(X_test, y_test) > 0.9  # predicts on the usual multi-box samples too
    scores = cross_val_score(_pipeline(), Xb, yb, groups=groups, cv=GroupKFold(n_splits=3))
    assert scores.min() > 0.85


def test_docstring_examples():
    import doctest

    import roicore.sklearn

    res = doctest.testmod(roicore.sklearn, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.failed == 0 and res.attempted > 0


# ---------------------------------------------------------------- batching
def _per_sample(fn, X, *args, **kw):
    """Oracle: one direct roicore call per sample (the pre-batching behaviour)."""
    rows = []
    for f, b in X:
        b = np.asarray(b, np.float64).reshape(-1, 4)
        out = fn(np.asarray(f, dtype=np.result_type(f, np.float32))[None], [b], *args, **kw)
        rows.append(out.reshape(len(b), out[0].size if len(b) else 0))
    return np.concatenate([r for r in rows if len(r)])


def _count_calls(monkeypatch, name):
    import roicore.sklearn as rs

    calls = []
    real = getattr(rs._api, name)

    def spy(x, rois, *a, **k):
        calls.append((x.shape, len(rois)))
        return real(x, rois, *a, **k)

    monkeypatch.setattr(rs._api, name, spy)
    return calls


def test_transform_is_one_call_per_map_shape(monkeypatch):
    X, _ = blob_data(n_images=50, seed=7)
    Xb, _, _ = one_box_per_sample(X)  # 200 one-box samples on 50 shared maps
    calls = _count_calls(monkeypatch, "roi_align")
    out = RoIPooler(output_size=3, sampling_ratio=2).transform(Xb)
    assert calls == [((50, 2, 32, 32), 200)]
    np.testing.assert_array_equal(out, _per_sample(roicore.roi_align, X, 3, 1.0, 2))
    # two map shapes, interleaved (and one image without boxes): one call per shape,
    # rows still in sample order
    rng = np.random.default_rng(3)
    mixed = []
    for i in range(12):
        size = 16 if i % 2 else 24
        fmap = rng.random((2, size, size + 3), dtype=np.float32)
        k = 0 if i == 5 else 1 + i % 3
        xy = rng.uniform(0, size / 2, (k, 2))
        mixed.append((fmap, np.hstack([xy, xy + rng.uniform(1, size / 2, (k, 2))])))
    calls.clear()
    out = RoIPooler(output_size=(2, 3), sampling_ratio=-1, aligned=True).transform(mixed)
    assert sorted(c[0] for c in calls) == [(6, 2, 16, 19), (6, 2, 24, 27)]
    np.testing.assert_array_equal(
        out, _per_sample(roicore.roi_align, mixed, (2, 3), 1.0, -1, True))


@pytest.mark.parametrize("method", ["pool", "align", "warp"])
def test_batch_views_need_no_copy(monkeypatch, method):
    # maps cut from one (N, C, H, W) array, given in shuffled order: pooled straight
    # from that memory (the stacked input shares memory with `batch`)
    rng = np.random.default_rng(5)
    batch = rng.random((30, 3, 20, 20), dtype=np.float32)
    order = rng.permutation(30)
    X = [(batch[i], rng.uniform(0, 9, 2).tolist() + rng.uniform(10, 19, 2).tolist())
         for i in order]
    import roicore.sklearn as rs

    seen = []
    real = getattr(rs._api, f"roi_{method}")
    monkeypatch.setattr(rs._api, f"roi_{method}",
                        lambda x, *a, **k: seen.append(np.shares_memory(x, batch)) or real(
                            x, *a, **k))
    out = RoIPooler(method=method, output_size=2, sampling_ratio=2).transform(X)
    assert seen == [True]
    fn = getattr(roicore, f"roi_{method}")
    ref = _per_sample(fn, X, 2) if method == "pool" else _per_sample(fn, X, 2, 1.0, 2)
    np.testing.assert_array_equal(out, ref)
    # the same maps as separate copies take the stacking path, same result
    seen.clear()
    out2 = RoIPooler(method=method, output_size=2, sampling_ratio=2).transform(
        [(f.copy(), b) for f, b in X])
    assert seen == [False]
    np.testing.assert_array_equal(out2, ref)


def test_sequence_building_maps_on_the_fly():
    # every X[i] is a fresh (integer, hence converted) map, as from a lazily loading
    # data set: each box must be pooled from its own map (maps are keyed by identity)
    from collections.abc import Sequence

    class Lazy(Sequence):
        def __len__(self):
            return 50

        def __getitem__(self, i):
            return (np.full((1, 6, 6), i, np.int32), [0, 0, 4, 4])

    out = RoIPooler(output_size=1).transform(Lazy())
    np.testing.assert_array_equal(out[:, 0], np.arange(50.0))


def test_transform_mixed_dtypes_and_empty():
    X, _ = blob_data(n_images=2)
    f64 = X[1][0].astype(np.float64)
    out = RoIPooler(output_size=2).transform([X[0], (f64, X[1][1])])
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, _per_sample(roicore.roi_align, [X[0], (f64, X[1][1])], 2))
    empty = RoIPooler(output_size=2).transform([(X[0][0], np.zeros((0, 4)))])
    assert empty.shape == (0, 8) and empty.dtype == np.float32


# ---------------------------------------------------------------- set_output
def test_set_output_without_fit():
    pd = pytest.importorskip("pandas", reason="pandas not installed")
    X, _ = blob_data(n_images=3)
    ref = RoIPooler(output_size=2).transform(X)
    names = RoIPooler(output_size=2).fit(X).get_feature_names_out()
    p = RoIPooler(output_size=2).set_output(transform="pandas")
    df = p.transform(X)  # never fitted: no NotFittedError
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == list(names)
    np.testing.assert_array_equal(df.to_numpy(), ref)
    assert isinstance(clone(p).transform(X), pd.DataFrame)  # clone keeps the config
    assert isinstance(p.set_output(transform="default").transform(X), np.ndarray)
    import sklearn

    with sklearn.config_context(transform_output="pandas"):  # the global switch
        assert isinstance(RoIPooler(output_size=2).transform(X), pd.DataFrame)
        assert isinstance(RoIPooler(output_size=2).fit_transform(X), pd.DataFrame)
    # inside a pipeline, with pandas output all the way through
    pipe = make_pipeline(RoIPooler(output_size=2), StandardScaler()).set_output(
        transform="pandas")
    assert list(pipe.fit_transform(X).columns) == list(names)
    with pytest.raises(ValueError, match="`transform` must be one of"):
        RoIPooler().set_output(transform="arrow")


def test_set_output_polars():
    pl = pytest.importorskip("polars", reason="polars not installed")
    X, _ = blob_data(n_images=2)
    df = RoIPooler(output_size=2).set_output(transform="polars").transform(X)
    assert isinstance(df, pl.DataFrame)
    assert df.columns[0] == "roialign_c0_y0_x0"
    np.testing.assert_array_equal(df.to_numpy(), RoIPooler(output_size=2).transform(X))


def test_is_fitted_convention():
    from sklearn.utils.validation import check_is_fitted

    check_is_fitted(RoIPooler())  # stateless: no NotFittedError
    check_is_fitted(make_pipeline(StandardScaler(), RoIPooler()).steps[-1][1])


# ---------------------------------------------------------------- cross-validation
def test_cross_val_score_natural_layout():
    X, y = blob_data(n_images=30, seed=6)  # 30 images, 4 boxes each, one label per box
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        cross_val_score(_pipeline(), X, y)  # why the helper exists: 30 samples, 120 labels
    Xb, yb, groups = one_box_per_sample(X, y)
    assert cross_val_score(_pipeline(), Xb, yb, cv=3).min() > 0.85  # plain call works
    scores = cross_val_score(_pipeline(), Xb, yb, groups=groups, cv=GroupKFold(n_splits=3))
    assert scores.min() > 0.85
    # labels may also come one sequence per image
    per_image = [y[4 * i:4 * i + 4].tolist() for i in range(30)]
    _, yb2, _ = one_box_per_sample(X, per_image)
    np.testing.assert_array_equal(yb2, y)
    ragged = np.empty(30, dtype=object)
    ragged[:] = [np.asarray(v) for v in per_image]
    np.testing.assert_array_equal(one_box_per_sample(X, ragged)[1], y)
    with pytest.raises(ValueError, match=r"y\[2\] must have one label per box"):
        one_box_per_sample(X, [*per_image[:2], [1], *per_image[3:]])


@pytest.mark.gpu
def test_cupy_maps_are_pooled_on_the_gpu():
    cupy = pytest.importorskip("cupy", reason="no CUDA device (CuPy not installed)")
    try:
        has_gpu = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        has_gpu = False
    if not has_gpu:
        pytest.skip("no CUDA device")
    X, _ = blob_data(n_images=6)
    Xb, _, _ = one_box_per_sample(X)
    p = RoIPooler(output_size=3, sampling_ratio=2)
    out = p.transform([(cupy.asarray(f), b) for f, b in Xb[:8]] + Xb[8:])  # GPU + CPU maps
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, p.transform(Xb), rtol=1e-5, atol=1e-6)
