import os
import sys

# test support (NumPy oracle, case generators, fuzz harness) is imported by module name
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
