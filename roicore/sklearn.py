"""scikit-learn front end: :class:`RoIPooler`, a stateless transformer that
turns ``(feature_map, boxes)`` samples into one fixed-length row per box.

X is a sequence of samples ``(feature_map, boxes)``: ``feature_map`` of shape
(C, H, W) (NumPy, or any CPU array with ``__dlpack__``), ``boxes`` of shape
(K_i, 4) rows ``[x1, y1, x2, y2]`` in image coordinates (a single box may be
given as shape (4,)).  ``transform`` returns a 2-D array with one row per box
(the boxes of all samples stacked in order) and ``C * PH * PW`` columns, so a
:class:`~sklearn.pipeline.Pipeline` can end in any classifier or regressor
fitted with one label per box.

Cross-validation splits X and y along the same axis, so for
``cross_val_score`` / ``GridSearchCV`` give each sample exactly one box:
:func:`one_box_per_sample` rewrites a data set that way (the feature maps are
shared, not copied) and returns the image index of every box, to be passed as
``groups`` to a group-aware splitter (``GroupKFold``) so that the boxes of one
image never land on both sides of a split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

try:
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


def _as_sample(sample: Any, i: int) -> tuple[Any, Any]:
    """Check one ``(feature_map, boxes)`` sample; return native arrays."""
    if isinstance(sample, (str, bytes)) or not isinstance(sample, Sequence) or len(sample) != 2:
        raise ValueError(
            f"X[{i}] must be a pair (feature_map, boxes): feature_map of shape (C, H, W) and "
            f"boxes of shape (K, 4) [x1, y1, x2, y2]; got {type(sample).__name__}"
        )
    fmap, boxes = sample
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
    boxes = xp.asarray(_interop.to_native(boxes, f"X[{i}][1]"))
    if boxes.ndim == 1 and boxes.shape[0] == 4:
        boxes = boxes[None]
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"X[{i}][1] (boxes) must have shape (K, 4) [x1, y1, x2, y2] or (4,); "
            f"got {tuple(boxes.shape)}"
        )
    return fmap, boxes


def _as_samples(X: Any) -> list[tuple[Any, Any]]:
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
    return [_as_sample(X[i], i) for i in range(len(X))]


class RoIPooler(TransformerMixin, BaseEstimator):
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

    def _pool(self, fmap: Any, boxes: Any) -> Any:
        x = fmap[None]
        if self.method == "pool":
            return _api.roi_pool(x, [boxes], self.output_size, self.spatial_scale, bins=self.bins)
        if self.method == "align":
            return _api.roi_align(x, [boxes], self.output_size, self.spatial_scale,
                                  self.sampling_ratio, self.aligned, mode=self.mode)
        return _api.roi_warp(x, [boxes], self.output_size, self.spatial_scale,
                             self.sampling_ratio, mode=self.mode, compat=self.compat)

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
        samples = _as_samples(X)
        channels = {int(f.shape[0]) for f, _ in samples}
        if len(channels) != 1:
            raise ValueError(f"all feature maps must have the same channel count; got {channels}")
        self.n_channels_in_ = channels.pop()
        return self

    def transform(self, X: Any) -> np.ndarray:
        """One row per box: ``(sum_i K_i, C * PH * PW)``.

        Parameters
        ----------
        X : sequence of (feature_map, boxes)

        Returns
        -------
        ndarray
            Boxes of all samples stacked in order; dtype of the feature maps
            (float64 for integer feature maps).
        """
        ph, pw = self._check_params()
        samples = _as_samples(X)
        want = getattr(self, "n_channels_in_", None)
        rows = []
        for i, (fmap, boxes) in enumerate(samples):
            C = int(fmap.shape[0])
            if want is not None and C != want:
                raise ValueError(
                    f"X[{i}][0] has {C} channels but RoIPooler was fitted on {want}"
                )
            out = self._pool(fmap, boxes).reshape(int(boxes.shape[0]), C * ph * pw)
            rows.append(out if isinstance(out, np.ndarray) else out.get())  # CuPy -> host
        if len({r.shape[1] for r in rows}) != 1:
            raise ValueError("all feature maps must have the same channel count")
        return np.concatenate(rows, axis=0)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names ``"<method>_c<c>_y<i>_x<j>"`` of the output columns (needs ``fit``)."""
        del input_features
        check_is_fitted(self, "n_channels_in_")
        ph, pw = self._check_params()
        return np.asarray(
            [f"roi{self.method}_c{c}_y{i}_x{j}"
             for c in range(self.n_channels_in_) for i in range(ph) for j in range(pw)],
            dtype=object,
        )

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
    with the same indices, which needs one label per *sample*; with one box
    per sample, a box's label is its sample's label.

    Parameters
    ----------
    X : sequence of (feature_map, boxes)
        ``boxes`` of shape (K_i, 4).
    y : array-like of shape (sum_i K_i,), optional
        One label per box, in the order of :meth:`RoIPooler.transform`'s rows.

    Returns
    -------
    X_boxes : list of (feature_map, box)
        ``box`` of shape (4,); feature maps are shared, not copied.
    y : ndarray or None
        ``y`` as an array (unchanged order), or None.
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
    for i, (fmap, boxes) in enumerate(samples):
        for k in range(int(boxes.shape[0])):
            X_boxes.append((fmap, boxes[k]))
            groups.append(i)
    if y is not None:
        y = np.asarray(y)
        if y.shape[0] != len(X_boxes):
            raise ValueError(
                f"y must have one label per box: X has {len(X_boxes)} boxes, y has {y.shape[0]}"
            )
    return X_boxes, y, np.asarray(groups, dtype=np.intp)


__all__ = ["RoIPooler", "one_box_per_sample"]
