"""Regenerate the committed protobuf/gRPC modules from the ``.proto`` files beside this file.

Run from anywhere (needs the ``dev`` extra, which brings ``grpcio-tools``)::

    python -m blueprintd.dra.proto.generate

Why a script and not a build step: the generated ``*_pb2.py`` files are committed so that
installing blueprintd never needs protoc. No ``*_pb2_grpc.py`` modules are generated: services
and clients are built from the descriptors in the ``*_pb2`` modules (``blueprintd.dra.rpc``). The include root is the
repository root, so protoc writes package-qualified imports
(``from blueprintd.dra.proto import dra_v1_pb2``) instead of the bare ``import dra_v1_pb2``
that only works with the proto directory on ``sys.path``.
"""

from __future__ import annotations

import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
REPO_ROOT = PROTO_DIR.parents[2]
PROTOS = ("pluginregistration.proto", "dra_v1.proto", "dra_v1beta1.proto")


def main() -> int:
    """Run protoc (from grpc_tools) over every proto; returns protoc's exit status."""
    from grpc_tools import protoc  # type: ignore[import-untyped]  # dev-only dependency

    include = str(Path(protoc.__file__).resolve().parent / "_proto")
    args = [
        "grpc_tools.protoc",
        f"-I{REPO_ROOT}",
        f"-I{include}",
        f"--python_out={REPO_ROOT}",
        *(str((PROTO_DIR / p).relative_to(REPO_ROOT)) for p in PROTOS),
    ]
    return int(protoc.main(args))


if __name__ == "__main__":
    sys.exit(main())
