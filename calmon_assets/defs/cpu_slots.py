"""The CPU-heavy parts of runs that share one process, a few at a time.

`calmon monitor` runs many checks at once in threads of one process, because a check mostly waits
for a still camera. Their CPU-heavy parts (reference features, offset estimation) must not then all
run at once as well: on a small machine they only slow each other down (one GIL, every reference's
features in memory together, every results-table commit colliding at the end of the cycle), so
each takes one of os.cpu_count() slots. A run alone in its own process (the daemon's runs) finds a
slot free at once.

A slot is one core, so OpenCV's own worker threads are turned off in these processes: with them an
estimate spreads over the cores the other slots hold and spends the difference spinning (1.29 CPU s
per 1080p estimate with them, 1.12 without: benchmarks/estimate_resolution.py).
"""

from __future__ import annotations

import os
import threading

import cv2

CPU_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
cv2.setNumThreads(1)
