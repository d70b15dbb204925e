"""What one idle drift watch stream costs, the unit most of the operator's memory per member
is made of (the default blueprint needs 39 per member; ``member_memory`` measures the whole).

Against one api-only member's API server, 5 x 39 list-and-watch streams (``MemberWatch``) are
opened and left idle, each variant in a fresh interpreter (a process that allocated and freed
before would reuse that memory and hide part of the cost): RSS per stream with one TLS context
shared by the streams' connections (what the operator does), and with the kubernetes client's
own pool, which has urllib3 build a context per connection (the baseline of the ratio). Also
measured the same way: an idle thread alone, the floor of a thread-per-stream design.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from blueprintd.devfleet import binaries
from blueprintd.devfleet.nodes import uniform_fleet
from blueprintd.devfleet.testing import running_fleet

STREAMS = 39
WATCHES = 5

_CHILD = r"""
import gc, json, sys, threading, time
from pathlib import Path
from kubernetes import client, config
from blueprintd.drift.watch import MemberWatch, StreamSpec

def rss():
    return int(next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmRSS")).split()[1])

kubeconfig, variant, watches, streams = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
api = config.new_client_from_config(kubeconfig)
client.CoreV1Api(api).list_namespace(limit=1)  # imports and first connection paid before the baseline
gc.collect()
before = rss()
if variant == "thread":
    stop = threading.Event()
    for _ in range(watches * streams):
        threading.Thread(target=stop.wait, daemon=True).start()
else:
    delivered = []
    for i in range(watches):
        w = MemberWatch(f"bench-{i}", api.configuration, delivered.append)
        if variant == "per-connection":  # the kubernetes client's own pool: file names, a context each
            w._api.rest_client = client.rest.RESTClientObject(w._api.configuration)
        w.set_streams([StreamSpec("v1", "ConfigMap", f"bench-{j}") for j in range(streams)])
    deadline = time.monotonic() + 60
    while len(delivered) < watches * streams and time.monotonic() < deadline:  # every stream listed
        time.sleep(0.2)
    if len(delivered) < watches * streams:
        sys.exit(f"only {len(delivered)} of {watches * streams} streams listed")
time.sleep(3)  # and watching
gc.collect()
print(json.dumps({"kib_per_stream": (rss() - before) / (watches * streams)}))
"""


def cost(kubeconfig: Path, variant: str) -> float:
    out = subprocess.run([sys.executable, "-c", _CHILD, str(kubeconfig), variant, str(WATCHES), str(STREAMS)],
                         capture_output=True, text=True, check=True, timeout=180)  # fmt: skip
    return float(json.loads(out.stdout.strip().splitlines()[-1])["kib_per_stream"])


def run() -> list[dict[str, Any]]:
    bins = binaries.ensure()
    with tempfile.TemporaryDirectory(prefix="bench-streams-") as d, \
            running_fleet(Path(d) / "f", uniform_fleet(1, ["l4"], 1, control_plane="api-only"), bins) as fleet:
        kc = fleet.members[0].kubeconfig
        got = {v: cost(kc, v) for v in ("per-connection", "shared", "thread")}
    name = f"{WATCHES} x {STREAMS} idle watch streams, a fresh interpreter each"
    return [
        {"name": name, "metric": "RSS per stream, a TLS context per connection (baseline)",
         "value": got["per-connection"], "unit": "KiB", "goal": ""},
        {"name": name, "metric": "RSS per stream, one shared TLS context", "value": got["shared"], "unit": "KiB",
         "goal": ""},
        {"name": name, "metric": "ratio shared / baseline", "value": got["shared"] / got["per-connection"],
         "unit": "", "goal": ""},
        {"name": name, "metric": "RSS per idle thread alone", "value": got["thread"], "unit": "KiB", "goal": ""},
    ]  # fmt: skip


if __name__ == "__main__":
    for row in run():
        print(row)
