"""The CPU-heavy parts of runs that share one process, a few at a time.

`calmon monitor` runs many checks at once in threads of one process, because a check mostly waits
for a still camera. Their CPU-heavy parts (reference features, offset estimation) must not then all
run at once as well: on a small machine they only slow each other down (one GIL, every reference's
features in memory together, every results-table commit colliding at the end of the cycle), so
each takes one of os.cpu_count() slots. A run alone in its own process (the daemon's runs) finds a
slot free at once.
"""

from __future__ import annotations

import os
import threading

CPU_SLOTS = threading.BoundedSemaphore(max(1, os.cpu_count() or 1))
