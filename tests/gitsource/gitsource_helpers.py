"""Shared helpers for the GitSource tests: real git repositories driven by GitPython.

``SourceRepo`` is what a platform team has: a working clone where they edit and commit, and
a bare "remote" (the git server) the operator fetches from over file:// (the operator allows
file:// only when told to, see ``ALLOW_FILE``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path
from typing import Any

import git
from kubernetes import client

from blueprintd.devfleet.binaries import Binaries
from blueprintd.devfleet.fleet import Fleet
from blueprintd.gitsource.sync import SyncOptions

ALLOW_FILE = SyncOptions(allow_file_urls=True)
REPO_ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "blueprintd.io", "v1alpha1"
KINDS = ("gitsources", "blueprints", "blueprintrevisions", "memberclusters")


def blueprint_yaml(name: str, version: str, namespace: str, value: str | None = None, extra: str = "") -> str:
    """A small Blueprint: one manifests add-on, a ConfigMap whose data carries the version."""
    return f"""\
apiVersion: blueprintd.io/v1alpha1
kind: Blueprint
metadata:
  name: {name}
  labels:
    team: platform
spec:
  version: {version}
  description: GitOps test blueprint
  addons:
    - name: config
      namespace: {namespace}
      manifests:
        - apiVersion: v1
          kind: ConfigMap
          metadata:
            name: gitops-version
          data:
            version: "{value or version}"
{extra}"""


class SourceRepo:
    """A working repository plus a bare remote, both in ``root``."""

    def __init__(self, root: Path, branch: str = "main") -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.branch = branch
        self.remote_path = root / "remote.git"
        git.Repo.init(self.remote_path, bare=True, initial_branch=branch).close()
        self.repo = git.Repo.init(root / "work", initial_branch=branch)
        with self.repo.config_writer() as cw:
            cw.set_value("user", "name", "Platform Team")
            cw.set_value("user", "email", "platform@example.com")
            cw.set_value("commit", "gpgsign", "false")
            cw.set_value("tag", "gpgsign", "false")
        self.repo.create_remote("origin", str(self.remote_path))

    @property
    def url(self) -> str:
        return f"file://{self.remote_path}"

    @property
    def work(self) -> Path:
        return Path(self.repo.working_tree_dir or "")

    def write(self, rel: str, text: str | bytes) -> None:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)

    def symlink(self, rel: str, target: str) -> None:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)

    def remove(self, rel: str) -> None:
        self.repo.index.remove([rel], working_tree=True)

    def commit(self, message: str, push: bool = True) -> str:
        self.repo.git.add("-A")
        self.repo.git.commit("--allow-empty", "-m", message)
        if push:
            self.push()
        return self.head

    def push(self, force: bool = False) -> None:
        args = ["origin", f"{'+' if force else ''}HEAD:refs/heads/{self.branch}"]
        self.repo.git.push(*args)

    def tag(self, name: str, annotated: bool = True, force: bool = False) -> None:
        args = ["-a", "-m", name] if annotated else []
        self.repo.git.tag(*args, *(["-f"] if force else []), name)
        self.repo.git.push("origin", f"{'+' if force else ''}refs/tags/{name}")

    def revert(self, *commits: str) -> str:
        """``git revert`` of ``commits`` (newest first), one commit, pushed."""
        self.repo.git.revert("--no-edit", "--no-commit", *commits)
        return self.commit(f"Revert {', '.join(c[:8] for c in commits)}")

    def orphan(self, files: dict[str, str]) -> str:
        """Replace history with one unrelated root commit holding ``files`` and force-push it."""
        self.repo.git.checkout("--orphan", "rewritten")
        self.repo.git.rm("-rf", "--quiet", ".")
        for rel, text in files.items():
            self.write(rel, text)
        self.repo.git.add("-A")
        self.repo.git.commit("-m", "rewritten history")
        self.repo.git.branch("-M", self.branch)
        self.push(force=True)
        return self.head

    @property
    def head(self) -> str:
        return str(self.repo.head.commit.hexsha)


class GitHttpsServer:
    """``git http-backend`` behind HTTPS with Basic auth: a real smart-HTTP git server.

    It proves the credential path end to end: the token must reach the server through the
    askpass helper, the CA from the Secret must be trusted, and a wrong token must fail
    without the token showing up anywhere.
    """

    def __init__(self, project_root: Path, username: str, password: str, workdir: Path) -> None:
        import base64
        import http.server
        import ssl
        import subprocess
        import threading

        from blueprintd.devfleet.certs import CertificateAuthority

        ca = CertificateAuthority.create("gitsource-test-ca")
        pair = ca.serving(["127.0.0.1"])
        workdir.mkdir(parents=True, exist_ok=True)
        cert, key = workdir / "tls.crt", workdir / "tls.key"
        pair.write(cert, key)
        self.ca_pem = ca.cert_pem.decode()
        expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.seen_auth: list[str] = []
        backend = [*git_exec("http-backend")]
        seen = self.seen_auth

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _serve(self) -> None:
                auth = self.headers.get("Authorization", "")
                seen.append(auth)
                if auth != expected:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="git"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                path, _, query = self.path.partition("?")
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                env = {
                    "PATH": os.environ.get("PATH", ""),
                    "GIT_PROJECT_ROOT": str(project_root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "REQUEST_METHOD": self.command,
                    "PATH_INFO": path,
                    "QUERY_STRING": query,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(length),
                    "REMOTE_USER": username,
                    "REMOTE_ADDR": "127.0.0.1",
                    "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
                    "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
                    "GIT_CONFIG_NOSYSTEM": "1",
                    "GIT_CONFIG_GLOBAL": "/dev/null",
                }
                out = subprocess.run(backend, input=body, env=env, capture_output=True, check=False).stdout
                head, _, payload = out.partition(b"\r\n\r\n")
                status = 200
                headers = []
                for line in head.decode().split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif name:
                        headers.append((name, value.strip()))
                self.send_response(status)
                for name, value in headers:
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _serve
            do_POST = _serve

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, repo: str) -> str:
        return f"https://127.0.0.1:{self.port}/{repo}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def git_exec(command: str) -> list[str]:
    """``git <command>`` as an argv for a helper that is not on PATH (git-http-backend)."""
    import subprocess

    exec_path = subprocess.run(["git", "--exec-path"], capture_output=True, text=True, check=True).stdout.strip()
    return [str(Path(exec_path) / f"git-{command}")]


def install_crds(fleet: Fleet, bins: Binaries) -> None:
    """The CRDs from crds/ and the parameters admission policy installed with them (idempotent:
    other modules of the session may have applied them)."""
    base = [str(bins.kubectl), "--kubeconfig", str(fleet.management.kubeconfig)]
    for args in (
        [
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=gitsource-test",
            "-f",
            str(REPO_ROOT / "crds"),
        ],
        ["wait", "--for=condition=Established", "--timeout=60s", "crd", "--all"],
    ):
        done = subprocess.run([*base, *args], capture_output=True, text=True, timeout=90)
        assert done.returncode == 0, done.stderr


def delete_all(api_client: Any, namespace: str) -> None:
    """Every blueprintd object in ``namespace``, then the namespace (the test fleet runs no
    namespace controller, so objects would otherwise outlive their namespace in etcd)."""
    custom = client.CustomObjectsApi(api_client)
    for plural in KINDS:
        try:
            items = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural).get("items", [])
        except client.ApiException:
            continue
        for obj in items:
            with contextlib.suppress(client.ApiException):
                custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, obj["metadata"]["name"])
    with contextlib.suppress(client.ApiException):
        client.CoreV1Api(api_client).delete_namespace(namespace)
