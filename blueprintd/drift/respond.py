"""Acting on drift in a member cluster (adapter): restore, guard, and install block policies.

Restoring uses exactly the writes the reconcile makes — server-side apply with force of the
whole owned object as field manager ``blueprintd``, ``helm upgrade`` to the Blueprint's chart
and values, a merge patch of the node labels — so a restored object is indistinguishable from
a freshly applied one and the next plan is empty. The block labels on protected objects are
applied under a manager of their own (``blueprintd-drift-guard``) with only the labels in the
configuration: that adds or removes the labels and leaves every other field, and every other
manager's ownership, alone.

Every write goes through clients the session hands out, so the shard fence
(``blueprintd.cluster.fence``) is checked before each one: a replica that lost the member
while a restore was queued does not send it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from blueprintd.cluster.objects import ObjectRef
from blueprintd.cluster.session import MemberSession
from blueprintd.drift.watch import ApiCounter
from blueprintd.plan.compare import diff_owned
from blueprintd.render.desired import Step

GUARD_MANAGER = "blueprintd-drift-guard"


class Responder:
    """The writes drift handling makes in one member cluster."""

    def __init__(self, session: MemberSession, counter: ApiCounter) -> None:
        self.session = session
        self.counter = counter
        self.objects = session.object_client()
        self.guard = session.object_client(GUARD_MANAGER)

    async def restore_object(self, obj: dict[str, Any]) -> str:
        self.counter.add("apply")
        await asyncio.to_thread(self.objects.apply, obj)
        return "restored by server-side apply"

    async def restore_release(self, step: Step) -> str:
        h = step.helm
        assert h is not None
        self.counter.add("helm-upgrade")
        state = await self.session.helm.install_or_upgrade(
            h.release_name, h.namespace, h.repo, h.chart, h.version, h.values
        )
        return f"restored by helm upgrade --install ({h.chart} {h.version}, revision {state.revision})"

    async def restore_labels(self, node: str, labels: dict[str, str]) -> str:
        self.counter.add("patch")
        await asyncio.to_thread(self.objects.label_node, node, dict(labels))
        return "restored by merge patch of the node labels"

    async def guard_labels(self, obj: dict[str, Any], labels: dict[str, str]) -> None:
        """Set (or with ``{}`` remove) the block labels of one object, touching nothing else."""
        meta = obj.get("metadata") or {}
        body: dict[str, Any] = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "metadata": {"name": meta.get("name")},
        }
        if meta.get("namespace"):
            body["metadata"]["namespace"] = meta["namespace"]
        if labels:
            body["metadata"]["labels"] = dict(labels)
        self.counter.add("apply")
        await asyncio.to_thread(self.guard.apply, body)

    async def ensure(self, wanted: dict[str, Any]) -> bool:
        """Apply an admission policy object when the member's copy differs; True if written."""
        self.counter.add("get")
        live = await asyncio.to_thread(self.objects.get, ObjectRef.of(wanted))
        if live is not None and not diff_owned(wanted, live):
            return False
        self.counter.add("apply")
        await asyncio.to_thread(self.objects.apply, wanted)
        return True

    async def remove(self, api_version: str, kind: str, name: str) -> bool:
        self.counter.add("delete")
        return bool(await asyncio.to_thread(self.objects.delete, ObjectRef(api_version, kind, "", name)))

    def whoami(self) -> str:
        """The user name the member's API server sees for the operator (SelfSubjectReview):
        the block policy must let exactly that identity through."""
        from kubernetes import client

        self.counter.add("create")
        review = client.AuthenticationV1Api(self.session.api_client).create_self_subject_review(
            {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
        )
        info = review.status.user_info if review.status else None
        return str(info.username) if info is not None and info.username else ""
