#!/usr/bin/env bash
# Smoke-test a built image the way Kubernetes runs it with charts/blueprintd's defaults: the
# image's own entrypoint, environment, user (65532, not root) and working directory from its
# OCI config, the root filesystem mounted read-only and an empty writable /tmp. Runs
# `blueprintd --help` and `blueprintd operator --help` and checks what they print.
#
# usage: image/smoke.sh IMAGE_DIR      (the OUT_DIR of image/build.sh; make image-test calls it)
set -euo pipefail
dir=$(realpath "$1"); tag=$(cat "$dir/tag")
bundle=$(mktemp -d "${TMPDIR:-/tmp}/blueprintd-smoke.XXXXXX")
trap 'rm -rf "$bundle"' EXIT
umoci unpack --image "$dir/oci:$tag" "$bundle/b" >/dev/null
cfg="$bundle/b/config.json"
uid=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["process"]["user"]["uid"])' "$cfg")
[ "$uid" != 0 ] || { echo "FAIL: the image runs as root"; exit 1; }
mapfile -t envs < <(python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["process"]["env"]))' "$cfg")
mapfile -t entry < <(python3 -c '
import json, sys
oci = json.load(open(sys.argv[1]))
blob = oci["manifests"][0]["digest"].split(":")[1]
manifest = json.load(open(f"{sys.argv[2]}/blobs/sha256/{blob}"))
config = json.load(open(f"{sys.argv[2]}/blobs/sha256/" + manifest["config"]["digest"].split(":")[1]))
print("\n".join(config["config"]["Entrypoint"]))' "$dir/oci/index.json" "$dir/oci")
rootfs="$bundle/b/rootfs"

as_user() {  # run a command in the image as Kubernetes would with the chart's securityContext
  unshare --mount --pid --fork --propagation private sh -c '
    set -e; r=$1; shift
    mount --bind "$r" "$r"; mount -o remount,ro,bind "$r"
    mount -t tmpfs -o size=64m,mode=1777 tmpfs "$r/tmp"
    mount --rbind /dev "$r/dev"; mount -t proc proc "$r/proc"
    exec chroot --userspec=65532:65532 "$r" "$@"' sh "$rootfs" /usr/bin/env -i "${envs[@]}" "$@"
}
run() { as_user "${entry[@]}" "$@"; }

top=$(run --help)
grep -q "GitOps fleet operator for GPU platforms" <<<"$top" || { echo "FAIL: blueprintd --help"; echo "$top"; exit 1; }
op=$(run operator --help)
grep -q -- "--metrics-port" <<<"$op" || { echo "FAIL: blueprintd operator --help"; echo "$op"; exit 1; }
[ "$(as_user /usr/bin/id -u)" = 65532 ] || { echo "FAIL: not running as uid 65532"; exit 1; }
if as_user /usr/bin/touch /opt/blueprintd/x 2>/dev/null; then echo "FAIL: root filesystem writable"; exit 1; fi
as_user /usr/bin/touch /tmp/x || { echo "FAIL: /tmp not writable"; exit 1; }
helm=$(as_user /usr/local/bin/helm version --short)
echo "smoke test passed: blueprintd --help and blueprintd operator --help as uid $uid on a read-only root (helm $helm)"
