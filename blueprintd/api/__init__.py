"""API models (group ``blueprintd.io``, version ``v1alpha1``); CRDs in ``crds/`` are generated from them."""

GROUP = "blueprintd.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
