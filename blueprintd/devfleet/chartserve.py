"""Serve the stand-in charts for a fleet started by ``blueprintd dev up``.

``dev up`` returns while the fleet keeps running, so the chart repository cannot be a thread
of that command: it runs as its own detached process (``python -m
blueprintd.devfleet.chartserve DIR``), recorded in ``fleet.json`` like the API servers so
``dev down`` stops it too. The repository's URL is what a Blueprint's chart mirror points at.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from blueprintd.devfleet.fleet import Fleet
from blueprintd.errors import DevFleetError

REPO_ROOT = Path(__file__).resolve().parents[2]


def chart_sources() -> list[Path]:
    """Every chart the local repository serves: upstream stand-ins and the project's own charts."""
    charts = REPO_ROOT / "charts"
    if not charts.is_dir():
        raise DevFleetError(
            f"the charts/ folder was not found next to the package ({charts}); "
            "run blueprintd from a source checkout to serve the stand-in charts"
        )
    # standins-broken holds charts that fail on purpose (other versions of the same names),
    # so rollout-failure tests and demos can point a blueprint version at them.
    dirs = sorted(p.parent for p in (charts / "standins").glob("*/Chart.yaml"))
    dirs += sorted(p.parent for p in (charts / "standins-broken").glob("*/Chart.yaml"))
    dirs += sorted(p.parent for p in charts.glob("*/Chart.yaml"))
    return dirs


def start_detached_chart_repo(fleet: Fleet, progress: Callable[[str], None] | None = None) -> str:
    """Start the chart server process for ``fleet`` and record it; returns the repository URL."""
    say = progress or (lambda _m: None)
    url_file = fleet.directory / "charts" / "url"
    url_file.unlink(missing_ok=True)
    fleet.start_helper("chart-repo", "blueprintd.devfleet.chartserve", str(fleet.directory))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if url_file.exists():
            fleet.state.chart_repo_url = url_file.read_text().strip()
            fleet.save()
            say(f"chart repository serving on {fleet.state.chart_repo_url}")
            return fleet.state.chart_repo_url
        stopped = fleet.helper_exit_status("chart-repo")
        if stopped is not None:
            log = fleet.directory / "logs" / "chart-repo.log"
            raise DevFleetError(f"the chart repository failed to start{stopped}:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise DevFleetError(f"the chart repository did not start within 120s; see {fleet.directory / 'logs'}")


def serve(directory: Path) -> None:
    """Process body: package the charts, serve them until SIGTERM."""
    from blueprintd.devfleet.binaries import ensure
    from blueprintd.devfleet.chartrepo import ChartRepoServer, build_chart_repo

    helm = ensure().helm
    out = build_chart_repo(chart_sources(), directory / "charts" / "repo", helm)
    server = ChartRepoServer(out)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    url_file = directory / "charts" / "url"
    tmp = url_file.with_suffix(".tmp")
    tmp.write_text(server.url)
    tmp.replace(url_file)
    print(f"serving {out} on {server.url}", flush=True)
    try:
        stop.wait()
    finally:
        with contextlib.suppress(Exception):
            server.stop()


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
