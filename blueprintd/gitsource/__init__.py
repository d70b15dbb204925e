"""GitOps sources: a git repository path whose Blueprint YAML the operator follows.

Pure core, thin adapters:

* ``content`` (pure) — the untrusted-content rules (path confinement, symlinks, sizes) and
  validation with ``blueprintd.api.load``: a commit's Blueprints, or every reason to refuse it;
* ``credentials`` (pure) — accepted URLs, credentials from a Secret, redaction;
* ``fetch`` (adapter, GitPython) — bare cache per URL + credentials, fetch, tree reads, never a
  checkout;
* ``sync`` — one sync: fetch → validate → plan (pure) → server-side apply → status;
* ``controller`` — when each source is due (the operator's kopf timer calls it);
* ``webhook`` — the optional push-webhook receiver.

See docs/gitops.md.
"""
