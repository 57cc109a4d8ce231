"""The Examples in the public docstrings run and print what they claim."""

from __future__ import annotations

import doctest

import roicore._api


def test_api_docstring_examples():
    res = doctest.testmod(roicore._api, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert res.attempted >= 4
    assert res.failed == 0
