"""scikit-learn front end: :class:`RoIPooler`, a stateless transformer that
turns ``(feature_map, boxes)`` samples into one fixed-length row per box.

X is a sequence of samples ``(feature_map, boxes)``: ``feature_map`` of shape
(C, H, W) (NumPy, or any CPU array with ``__dlpack__``), ``boxes`` of shape
(K_i, 4) rows ``[x1, y1, x2, y2]`` in image coordinates (a single box may be
given as shape (4,)).  ``transform`` returns a 2-D array with one row per box
(the boxes of all samples stacked in order) and ``C * PH * PW`` columns, so a
:class:`~sklearn.pipeline.Pipeline` can end in any classifier or regressor
fitted with one label per box.

``transform`` pools all boxes whose maps share a shape in one roicore call
(the distinct maps stacked into an (N, C, H, W) batch, in place when they are
consecutive slices of one array), so its cost is that of one batched call.

Cross-validation splits X and y along the same axis, so for
``cross_val_score`` / ``GridSearchCV`` give each sample exactly one box:
:func:`one_box_per_sample` rewrites a data set that way (the feature maps are
shared, not copied) and returns the image index of every box, to be passed as
``groups`` to a group-aware splitter (``GroupKFold``) so that the boxes of one
image never land on both sides of a split.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

try:
    import sklearn
    from sklearn.base import BaseEstimator, TransformerMixin
    from sklearn.utils.validation import check_is_fitted
except ImportError as _exc:  # pragma: no cover - exercised only without scikit-learn
    raise ImportError(
        "roicore.sklearn needs scikit-learn: pip install scikit-learn "
        "(or pip install 'roicore[sklearn]')"
    ) from _exc

from . import _api, _interop
from . import _validation as V

_METHODS = ("pool", "align", "warp")


def _pair(sample: Any, i: int) -> tuple[Any, Any]:
    if isinstance(sample, (str, bytes)) or not isinstance(sample, Sequence) or len(sample) != 2:
        raise ValueError(
            f"X[{i}] must be a pair (feature_map, boxes): feature_map of shape (C, H, W) and "
            f"boxes of shape (K, 4) [x1, y1, x2, y2]; got {type(sample).__name__}"
        )
    return sample[0], sample[1]


def _as_map(fmap: Any, i: int) -> Any:
    """Check one feature map; return it as a NumPy or CuPy array of a float dtype."""
    fmap = _interop.to_native(fmap, f"X[{i}][0]")
    if _interop.is_native(fmap) and not isinstance(fmap, np.ndarray):  # CuPy: stay on the GPU
        import cupy as xp
    else:
        xp = np
        fmap = np.asarray(fmap)
    if fmap.ndim != 3:
        raise ValueError(
            f"X[{i}][0] (feature map) must have shape (C, H, W); got {tuple(fmap.shape)}"
        )
    if np.dtype(fmap.dtype).kind != "f":
        if np.dtype(fmap.dtype).kind not in "iub":
            raise TypeError(f"X[{i}][0] (feature map) must be numeric; got dtype {fmap.dtype}")
        fmap = fmap.astype(xp.float64)
    return fmap


def _as_boxes(boxes: Any, i: int) -> np.ndarray:
    """Check one sample's boxes; return them as a (K, 4) float64 NumPy array."""
    if not isinstance(boxes, np.ndarray):
        boxes = _interop.to_native(boxes, f"X[{i}][1]")
        if not isinstance(boxes, np.ndarray) and _interop.is_native(boxes):  # CuPy
            boxes = boxes.get()
    try:
        boxes = np.asarray(boxes, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"X[{i}][1] (boxes) must be a numeric array of shape (K, 4) [x1, y1, x2, y2] "
            f"or (4,): {exc}"
        ) from exc
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"X[{i}][1] (boxes) must have shape (K, 4) [x1, y1, x2, y2] or (4,); "
            f"got {tuple(boxes.shape)}"
        )
    return boxes


def _as_sample(sample: Any, i: int) -> tuple[Any, np.ndarray]:
    """Check one ``(feature_map, boxes)`` sample; return (native map, (K, 4) boxes)."""
    fmap, boxes = _pair(sample, i)
    return _as_map(fmap, i), _as_boxes(boxes, i)


def _check_X(X: Any) -> None:
    if isinstance(X, (str, bytes)) or not hasattr(X, "__len__") or not hasattr(X, "__getitem__"):
        raise ValueError(
            "X must be a sequence of (feature_map, boxes) samples; got "
            f"{type(X).__name__}"
        )
    if isinstance(X, np.ndarray) and X.dtype != object:
        raise ValueError(
            "X must be a sequence of (feature_map, boxes) samples, not a numeric array of "
            f"shape {X.shape}: e.g. X = [(feature_map, boxes), ...]"
        )
    if len(X) == 0:
        raise ValueError("X is empty: it needs at least one (feature_map, boxes) sample")


def _as_samples(X: Any) -> list[tuple[Any, np.ndarray]]:
    _check_X(X)
    return [_as_sample(X[i], i) for i in range(len(X))]


def _is_plain_map(m: Any) -> bool:
    return type(m) is np.ndarray and m.ndim == 3 and m.dtype.kind == "f"


class _Batch:
    """X gathered for batched pooling: the distinct feature maps and every box.

    A feature map is *distinct* by identity: samples that reference the same
    map object (as :func:`one_box_per_sample` makes them) share one entry.
    The common case (NumPy maps, NumPy boxes) takes a fast path; anything
    else goes through the full checks of :func:`_as_map` / :func:`_as_boxes`.
    """

    def __init__(self, X: Any) -> None:
        _check_X(X)
        n = len(X)
        samples = X if isinstance(X, (list, tuple)) else [X[i] for i in range(n)]
        if all(type(s) is tuple and len(s) == 2 for s in samples):
            given = [s[0] for s in samples]
            boxes = [s[1] for s in samples]
        else:
            pairs = [_pair(s, i) for i, s in enumerate(samples)]
            given = [p[0] for p in pairs]
            boxes = [p[1] for p in pairs]
        # distinct maps by identity; `given` keeps every map alive until the end of the
        # call, so no id() is reused (a sequence may build its items on the fly)
        self._given = given
        index: dict[int, int] = {}
        map_of_sample = [index.setdefault(k, len(index)) for k in map(id, given)]
        first = np.unique(np.asarray(map_of_sample, np.intp), return_index=True)[1]
        self.first_sample: list[int] = first.tolist()  # a sample of each map, for messages
        self.maps: list[Any] = [  # validated NumPy/CuPy maps
            given[i] if _is_plain_map(given[i]) else _as_map(given[i], i)
            for i in self.first_sample
        ]
        #: (K, 4) float64 boxes in sample order, and the map of each
        stacked = None
        if all(type(b) is np.ndarray and b.shape == (4,) for b in boxes):
            stacked = np.stack(boxes)  # one box per sample: the common fast path
            if stacked.dtype.kind not in "fiu":
                stacked = None
        if stacked is not None:
            self.boxes = stacked.astype(np.float64, copy=False)
            self.map_of_box = np.asarray(map_of_sample, np.intp)
        else:
            arrays = [_as_boxes(b, i) for i, b in enumerate(boxes)]
            self.boxes = np.concatenate(arrays)
            self.map_of_box = np.repeat(np.asarray(map_of_sample, np.intp),
                                        [a.shape[0] for a in arrays])

    def groups(self) -> list[tuple[list[int], Any]]:
        """Distinct maps grouped by (array library, shape, dtype): [(map indices, stack)]."""
        by_key: dict[tuple, list[int]] = {}
        for j, m in enumerate(self.maps):
            key = (isinstance(m, np.ndarray), m.shape, m.dtype)
            by_key.setdefault(key, []).append(j)
        out = []
        for (is_numpy, _, _), js in by_key.items():
            if not is_numpy:
                out.append((js, _stack([self.maps[j] for j in js])))
                continue
            # memory order, so that maps cut from one batch stack without a copy
            addr = [self.maps[j].__array_interface__["data"][0] for j in js]
            order = sorted(range(len(js)), key=addr.__getitem__)
            js = [js[k] for k in order]
            out.append((js, _stack([self.maps[j] for j in js], [addr[k] for k in order])))
        return out


def _stack(maps: list[Any], addr: list[int] | None = None) -> Any:
    """(N, C, H, W) batch of equal-shape maps; zero-copy when they already are
    consecutive C-contiguous blocks of memory (e.g. ``batch[0], batch[1], ...``),
    ``addr`` being their data addresses."""
    m0 = maps[0]
    if len(maps) == 1:
        return m0[None]
    if not isinstance(m0, np.ndarray):  # CuPy
        import cupy

        return cupy.stack(maps)
    nbytes = m0.nbytes
    if (addr is not None and nbytes and all(b - a == nbytes for a, b in itertools.pairwise(addr))
            and all(m.flags.c_contiguous for m in maps)):
        # every byte of the view belongs to one of the (live) maps
        return np.lib.stride_tricks.as_strided(
            m0, (len(maps), *m0.shape), (nbytes, *m0.strides), writeable=False)
    return np.stack(maps)


class RoIPooler(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """Pool every box of every feature map to a fixed-size feature row.

    Stateless: ``fit`` only validates the parameters (and records the
    channel count for :meth:`get_feature_names_out`); ``transform`` works
    without it.

    Parameters
    ----------
    method : {"align", "pool", "warp"}, default="align"
        :func:`roicore.roi_align`, :func:`roicore.roi_pool` or
        :func:`roicore.roi_warp`.
    output_size : int or (int, int), default=7
        Bins (PH, PW) per box; each row has ``C * PH * PW`` features
        (channel-major, as ``out.reshape(K, -1)`` of the (K, C, PH, PW) result).
    spatial_scale : float, default=1.0
        Feature-map pixels per image pixel (e.g. 1/16 for a stride-16 map).
    sampling_ratio : int, default=-1
        Samples per bin side for ``"align"`` / ``"warp"`` (``<= 0``: adaptive).
    aligned : bool, default=False
        Half-pixel box shift of ``"align"``.
    mode : {"avg", "max"}, default="avg"
        Reduction of ``"align"`` / ``"warp"`` (``"pool"`` always takes the max).
    bins : {"fast_rcnn", "equal"}, default="fast_rcnn"
        Bin rule of ``"pool"``.
    compat : {None, "mnc"}, default=None
        MNC sampling for ``"warp"``.

    Parameters that do not apply to ``method`` are ignored, so a grid search
    may vary ``method`` freely.

    Attributes
    ----------
    n_channels_in_ : int
        Channels C of the feature maps seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> from roicore.sklearn import RoIPooler
    >>> fmap = np.random.default_rng(0).random((3, 16, 16), dtype=np.float32)
    >>> X = [(fmap, np.array([[0, 0, 8, 8], [4, 4, 15, 12]])), (fmap, np.zeros((0, 4)))]
    >>> RoIPooler(output_size=2).fit_transform(X).shape
    (2, 12)
    """

    def __init__(self, method: str = "align", output_size: int | tuple[int, int] = 7,
                 spatial_scale: float = 1.0, sampling_ratio: int = -1, aligned: bool = False,
                 mode: str = "avg", bins: str = "fast_rcnn", compat: str | None = None) -> None:
        self.method = method
        self.output_size = output_size
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        self.mode = mode
        self.bins = bins
        self.compat = compat

    # ------------------------------------------------------------------ helpers
    def _check_params(self) -> tuple[int, int]:
        V.check_choice(self.method, "method", _METHODS)
        size = V.check_output_size(self.output_size)
        V.check_spatial_scale(self.spatial_scale)
        if self.method == "pool":
            V.check_bins(self.bins)
        else:
            V.check_sampling_ratio(self.sampling_ratio)
            V.check_mode(self.mode)
        if self.method == "align":
            V.check_aligned(self.aligned)
        if self.method == "warp":
            V.check_compat(self.compat)
        return size

    def _pool(self, x: Any, rois: Any) -> Any:
        if self.method == "pool":
            return _api.roi_pool(x, rois, self.output_size, self.spatial_scale, bins=self.bins)
        if self.method == "align":
            return _api.roi_align(x, rois, self.output_size, self.spatial_scale,
                                  self.sampling_ratio, self.aligned, mode=self.mode)
        return _api.roi_warp(x, rois, self.output_size, self.spatial_scale,
                             self.sampling_ratio, mode=self.mode, compat=self.compat)

    def _names(self, channels: int) -> np.ndarray:
        ph, pw = self._check_params()
        return np.asarray(
            [f"roi{self.method}_c{c}_y{i}_x{j}"
             for c in range(channels) for i in range(ph) for j in range(pw)],
            dtype=object,
        )

    def _output_container(self) -> str:
        config = getattr(self, "_sklearn_output_config", {}).get("transform")
        if config is None or config == "default":
            config = sklearn.get_config()["transform_output"]
        return config

    # ------------------------------------------------------------------ API
    def fit(self, X: Any, y: Any = None) -> RoIPooler:
        """Validate the parameters and X; record the channel count.

        Parameters
        ----------
        X : sequence of (feature_map, boxes)
        y : ignored

        Returns
        -------
        self
        """
        del y
        self._check_params()
        batch = _Batch(X)
        channels = {int(m.shape[0]) for m in batch.maps}
        if len(channels) != 1:
            raise ValueError(f"all feature maps must have the same channel count; got {channels}")
        self.n_channels_in_ = channels.pop()
        return self

    def transform(self, X: Any) -> Any:
        """One row per box: ``(sum_i K_i, C * PH * PW)``.

        All boxes whose feature maps have the same shape and dtype are pooled
        in ONE roicore call: the distinct maps (by identity) are stacked into
        an (N, C, H, W) batch — without a copy when they already are
        consecutive blocks of one array, e.g. ``[(batch[i], boxes[i]) ...]``
        — and every box gets its map's batch index.  Maps of different shapes
        take one call per shape.  Results equal the per-sample calls bit for
        bit.

        Parameters
        ----------
        X : sequence of (feature_map, boxes)

        Returns
        -------
        ndarray or DataFrame
            Boxes of all samples stacked in order; dtype of the feature maps
            (float64 for integer feature maps).  A pandas / polars DataFrame
            with the columns of :meth:`get_feature_names_out` after
            ``set_output(transform="pandas")`` / ``"polars"`` (or the global
            ``sklearn.set_config(transform_output=...)``); no ``fit`` needed.
        """
        ph, pw = self._check_params()
        batch = _Batch(X)
        want = getattr(self, "n_channels_in_", None)
        channels = [int(m.shape[0]) for m in batch.maps]
        for j, C in enumerate(channels):
            if want is not None and C != want:
                raise ValueError(
                    f"X[{batch.first_sample[j]}][0] has {C} channels but RoIPooler was "
                    f"fitted on {want}"
                )
        if len(set(channels)) != 1:
            raise ValueError(
                f"all feature maps must have the same channel count; got {set(channels)}"
            )
        C = channels[0]
        K = int(batch.boxes.shape[0])
        parts = []
        for js, stack in batch.groups():
            pos = np.full(len(batch.maps), -1, np.intp)
            pos[js] = np.arange(len(js))
            pos_of_box = pos[batch.map_of_box]
            rows = np.flatnonzero(pos_of_box >= 0)
            rois = np.empty((rows.size, 5), np.float64)
            rois[:, 0] = pos_of_box[rows]
            rois[:, 1:] = batch.boxes[rows]
            if not isinstance(stack, np.ndarray):  # CuPy
                import cupy

                rois = cupy.asarray(rois)
            out = self._pool(stack, rois).reshape(rows.size, C * ph * pw)
            parts.append((rows, out if isinstance(out, np.ndarray) else out.get()))
        if len(parts) == 1:
            result = parts[0][1]  # one call: rows already in sample order
        else:
            result = np.empty((K, C * ph * pw), np.result_type(*[o for _, o in parts]))
            for rows, out in parts:
                result[rows] = out
        container = self._output_container()
        if container == "pandas":
            import pandas as pd

            return pd.DataFrame(result, columns=self._names(C))
        if container == "polars":
            import polars as pl

            return pl.DataFrame(result, schema=list(self._names(C)), orient="row")
        return result

    def set_output(self, *, transform: str | None = None) -> RoIPooler:
        """Choose the container of :meth:`transform`'s output.

        Works with or without ``fit``: the column names come from the data.

        Parameters
        ----------
        transform : {"default", "pandas", "polars"} or None
            ``"default"``: NumPy array (or the global
            ``sklearn.set_config(transform_output=...)``); None: unchanged.

        Returns
        -------
        self
        """
        if transform is None:
            return self
        V.check_choice(transform, "transform", ("default", "pandas", "polars"))
        if not hasattr(self, "_sklearn_output_config"):
            self._sklearn_output_config = {}
        self._sklearn_output_config["transform"] = transform
        return self

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names ``"roi<method>_c<c>_y<i>_x<j>"`` of the output columns (needs ``fit``:
        the channel count comes from the fitted data)."""
        del input_features
        check_is_fitted(self, "n_channels_in_")
        return self._names(self.n_channels_in_)

    def __sklearn_is_fitted__(self) -> bool:
        """Stateless: usable for ``transform`` straight after construction."""
        return True

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False  # X is a sequence of (feature_map, boxes)
        tags.requires_fit = False  # stateless
        tags.target_tags.required = False
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


def one_box_per_sample(X: Any, y: Any = None) -> tuple[list, Any, np.ndarray]:
    """Rewrite a data set so that every sample carries exactly one box.

    Cross-validation (``cross_val_score``, ``GridSearchCV``) indexes X and y
    with the same indices, which needs one label per *sample*; the natural
    layout — one sample per image with K_i boxes, one label per box — has
    fewer samples than labels ("inconsistent numbers of samples").  With one
    box per sample, a box's label is its sample's label.  Transforming the
    result costs the same as transforming X: :meth:`RoIPooler.transform`
    pools all boxes of equal-shape maps in one call.

    Parameters
    ----------
    X : sequence of (feature_map, boxes)
        ``boxes`` of shape (K_i, 4).
    y : array-like, optional
        Either one label per box, shape (sum_i K_i,), in the order of
        :meth:`RoIPooler.transform`'s rows, or one sequence of K_i labels per
        image (``len(y) == len(X)``), which is concatenated.

    Returns
    -------
    X_boxes : list of (feature_map, box)
        ``box`` of shape (4,); feature maps are shared, not copied.
    y : ndarray or None
        One label per box, or None.
    groups : ndarray of int
        Index in X of each box's sample: pass as ``groups`` to ``GroupKFold``
        (or another group splitter) so no image is on both sides of a split.

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV, GroupKFold
    >>> Xb, yb, groups = one_box_per_sample(X, y)                  # doctest: +SKIP
    >>> GridSearchCV(pipe, grid, cv=GroupKFold(3)).fit(Xb, yb, groups=groups)  # doctest: +SKIP
    """
    samples = _as_samples(X)
    X_boxes: list[tuple[Any, Any]] = []
    groups: list[int] = []
    counts = []
    for i, (fmap, boxes) in enumerate(samples):
        counts.append(int(boxes.shape[0]))
        for k in range(int(boxes.shape[0])):
            X_boxes.append((fmap, boxes[k]))
            groups.append(i)
    if y is not None:
        y = _labels_per_box(y, counts)
    return X_boxes, y, np.asarray(groups, dtype=np.intp)


def _labels_per_box(y: Any, counts: list[int]) -> np.ndarray:
    n_boxes = sum(counts)
    ragged = (
        (not isinstance(y, np.ndarray) or y.dtype == object)
        and len(y) == len(counts) and len(y) > 0
        and all(np.ndim(v) == 1 for v in y)
    )
    if ragged:  # one sequence of labels per image
        for i, (v, k) in enumerate(zip(y, counts, strict=True)):
            if len(v) != k:
                raise ValueError(
                    f"y[{i}] must have one label per box of X[{i}]: {k} boxes, {len(v)} labels"
                )
        parts = [np.asarray(v) for v in y]
        return np.concatenate(parts) if n_boxes else np.asarray([])
    y = np.asarray(y)
    if y.ndim == 0 or y.shape[0] != n_boxes:
        raise ValueError(
            f"y must have one label per box: X has {n_boxes} boxes, y has "
            f"{y.shape[0] if y.ndim else 'a scalar'} (or give one sequence of labels per image)"
        )
    return y


__all__ = ["RoIPooler", "one_box_per_sample"]
