"""Reproducible measurements of nst-video: `python -m benchmarks [NAME ...] [--quick]`.

Each benchmark writes benchmarks/results/<name>.json (+ <name>.png) and prints a markdown
table. Benchmarks never run in the test suite.
"""

import os

# Quiet most of TensorFlow's C++ INFO lines on stderr (the oneDNN notice still shows).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
