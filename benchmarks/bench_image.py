"""Benchmark of ``make image``: how long the operator image takes to build here, and how large it is.

Runs image/build.sh (mmdebstrap + umoci, no registry) into a temporary folder with the pinned
helm. The Debian base layer is cached in ~/.cache/blueprintd/image (weekly); the row says
whether this run built it (cold) or reused it (warm: wheels and the app layer only). Sizes:
the root filesystem as installed (both layers, uncompressed) and the OCI blobs as a registry
stores and a node pulls them (gzip).

Run standalone: ``python benchmarks/bench_image.py``. ``run()`` returns rows
``{name, metric, value, unit, goal}``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # standalone run from a checkout
    sys.path.insert(0, str(ROOT))

from blueprintd.devfleet.binaries import ensure  # noqa: E402

NAME = "operator image (make image)"


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        done = subprocess.run(
            [str(ROOT / "image" / "build.sh"), tmp, sys.executable, str(ensure().helm)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"image/build.sh failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
        built = json.loads((Path(tmp) / "build.json").read_text())
    cold = built["baseBuilt"]  # build.sh knows whether its base layer was cached
    return [
        {
            "name": NAME,
            "metric": "build time, cold (Debian base built)" if cold else "build time, warm (base layer cached)",
            "value": float(built["seconds"]),
            "unit": "s",
            "goal": "",
        },
        {"name": NAME, "metric": "size, root filesystem", "value": built["rootfsBytes"] / 2**20, "unit": "MiB",
         "goal": ""},
        {"name": NAME, "metric": "size, compressed (OCI blobs)", "value": built["compressedBytes"] / 2**20,
         "unit": "MiB", "goal": ""},
    ]


if __name__ == "__main__":
    rows = run()
    for r in rows:
        print(f"{r['name']:32} {r['metric']:40} {r['value']:>10.1f} {r['unit']}")
    print(json.dumps(rows, indent=2))
