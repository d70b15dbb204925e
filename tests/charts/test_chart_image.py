"""charts/blueprintd's defaults run the image as it is built: non-root 65532, read-only root, /tmp, helm path.

The image is built two ways (Containerfile in a user's CI, image/build.sh for `make image`);
both must agree with each other and with the chart, or the operator pod fails at start
(a different user, a HOME it cannot write, no helm where the chart says).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from blueprintd.devfleet.binaries import Binaries

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = (REPO / "Containerfile").read_text()
BUILD = (REPO / "image" / "build.sh").read_text()


def deployment(helm: Path) -> dict[str, Any]:
    out = subprocess.run([str(helm), "template", "bpd", str(REPO / "charts" / "blueprintd"), "-n", "x"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return next(d for d in yaml.safe_load_all(out.stdout) if d and d["kind"] == "Deployment")


def test_chart_defaults_match_the_image(kube_binaries: Binaries) -> None:
    pod = deployment(kube_binaries.helm)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (65532, 65532)
    container = pod["containers"][0]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert {"name": "work", "mountPath": "/tmp"} in container["volumeMounts"]
    assert {"name": "work", "emptyDir": {}} in pod["volumes"]
    assert "--helm=/usr/local/bin/helm" in container["args"]

    # The Containerfile and image/build.sh say the same.
    assert re.search(r"^USER 65532:65532$", CONTAINERFILE, re.M)
    assert "--config.user 65532:65532" in BUILD
    assert "COPY --from=helm /out/helm /usr/local/bin/helm" in CONTAINERFILE
    assert '"$root/usr/local/bin/helm"' in BUILD
    for env in ("HOME=/tmp", "HELM_CACHE_HOME=/tmp/helm/cache", "HELM_CONFIG_HOME=/tmp/helm/config",
                "HELM_DATA_HOME=/tmp/helm/data", "PYTHONDONTWRITEBYTECODE=1"):
        assert env in CONTAINERFILE and f"--config.env {env}" in BUILD, env
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/blueprintd"]' in CONTAINERFILE
    assert "--config.entrypoint /usr/bin/tini --config.entrypoint -- --config.entrypoint /usr/local/bin/blueprintd" \
        in BUILD
    packages = re.search(r"^packages=(\S+)$", BUILD, re.M)
    assert packages is not None
    apt = re.search(r"apt-get install -y --no-install-recommends ([^\\&]+)", CONTAINERFILE.split("AS wheels")[1]
                    .split("FROM docker.io/library/debian:bookworm-slim", 1)[1])
    assert apt is not None and set(apt.group(1).split()) == set(packages.group(1).split(","))
