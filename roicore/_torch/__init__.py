"""Private helpers of :mod:`roicore.torch` (imported only through it).

* :mod:`.ops` -- the ``torch.ops.roicore`` custom operators.
* :mod:`.onnx` -- their ONNX translations (needs onnxscript).
"""
