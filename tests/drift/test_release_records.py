"""What the drift monitor keeps of a Helm release's storage Secrets, in process: the record of
every revision (status, values) for the checks, the rendered manifest of the current revision
only, and the Secrets themselves without their data. Each revision's record holds the whole
chart's output; kept for ten revisions on every member, it was most of the monitor's memory."""

from __future__ import annotations

import asyncio
import base64
import gzip
import json
from typing import Any

import test_handoff
from test_handoff import MC, drain, no_cluster  # noqa: F401 (no_cluster: autouse)

from blueprintd.cluster import helmrecords
from blueprintd.drift.detect import release_target
from blueprintd.drift.monitor import ClusterMonitor, DriftMonitor, secret_stream
from blueprintd.drift.watch import Changed, StreamSpec, Synced
from blueprintd.render.desired import DesiredState

NS = "kai"
STREAM = secret_stream(NS)
RID = release_target(NS, "kai").id


def manifest(*names: str) -> str:
    return "\n---\n".join(
        json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": n, "namespace": NS}}) for n in names
    )


def record(revision: int, status: str, *names: str) -> dict[str, Any]:
    rel = {
        "name": "kai",
        "namespace": NS,
        "version": revision,
        "config": {"revision": revision},
        "info": {"status": status},
        "chart": {"metadata": {"name": "kai-scheduler", "version": "v0.10.2"}},
        "manifest": manifest(*names),
    }
    data = base64.b64encode(base64.b64encode(gzip.compress(json.dumps(rel).encode()))).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": helmrecords.SECRET_TYPE,
        "metadata": {
            "name": helmrecords.secret_name("kai", revision),
            "namespace": NS,
            "resourceVersion": str(100 + revision),
            "labels": {"owner": "helm", "name": "kai", "version": str(revision), "status": status},
        },
        "data": {"release": data},
    }


def desired() -> DesiredState:
    return DesiredState.model_validate(
        {
            "blueprint": "bp",
            "version": "1.0.0",
            "revision": "sha256:x",
            "cluster": "m1",
            "steps": [
                {
                    "addon": "kai",
                    "namespace": NS,
                    "helm": {"releaseName": "kai", "namespace": NS, "repo": "http://mirror", "chart": "kai-scheduler",
                             "version": "v0.10.2", "values": {}},
                    "drift": {"mode": "notify"},
                }
            ],
        }
    )  # fmt: skip


class _Scopes:
    def namespaced(self, api_version: str, kind: str) -> bool:
        return True


class _Session(test_handoff._Session):
    objects = _Scopes()


async def watching_release() -> tuple[ClusterMonitor, list[StreamSpec | None]]:
    parent = DriftMonitor(None, operator_user="blueprintd-operator", resync_seconds=300.0)
    m = ClusterMonitor(parent, "m1", _Session(), MC)  # type: ignore[arg-type]
    parent._clusters["m1"] = m
    await m.update([desired()], MC)
    relists: list[StreamSpec | None] = []
    m.watch.relist = relists.append  # type: ignore[method-assign]
    return m, relists


def rendered_names(m: ClusterMonitor) -> set[str]:
    return {m.index.objects[oid].target.ref.name for oid in m.index.rendered.get(RID, [])}


def test_only_the_current_revision_keeps_its_manifest_and_the_cache_keeps_no_record_data() -> None:
    async def scenario() -> None:
        m, _ = await watching_release()
        m._synced(Synced(STREAM, [record(1, "superseded", "old"), record(2, "deployed", "a", "b")]))
        await drain(m)
        records = m.releases[RID].records
        assert sorted(records) == [1, 2]
        assert records[1].manifest == "" and records[1].values == {"revision": 1}, "kept: status and values"
        assert records[2].manifest == manifest("a", "b")
        assert rendered_names(m) == {"a", "b"}
        assert all("data" not in s for s in m.cache[STREAM].values()), "the record lives decoded, once"
        assert m.cache[STREAM][(NS, "sh.helm.release.v1.kai.v2")]["metadata"]["labels"]["status"] == "deployed"

        m._changed(Changed(STREAM, "ADDED", record(3, "deployed", "c")))
        await drain(m)
        assert records[2].manifest == "" and records[3].manifest == manifest("c")
        assert rendered_names(m) == {"c"}
        await m.stop()

    asyncio.run(scenario())


def test_deleting_the_newest_record_relists_to_read_the_manifest_now_current() -> None:
    async def scenario() -> None:
        m, relists = await watching_release()
        history = [record(1, "superseded", "x"), record(2, "superseded", "a"), record(3, "deployed", "b")]
        m._synced(Synced(STREAM, history))
        m._changed(Changed(STREAM, "DELETED", record(1, "superseded", "x")))
        assert relists == [], "an older revision going says nothing new"
        m._changed(Changed(STREAM, "DELETED", record(3, "deployed", "b")))
        assert relists == [STREAM], "revision 2 is current now; its manifest is read again"
        m._synced(Synced(STREAM, [record(2, "superseded", "a")]))
        assert m.releases[RID].records[2].manifest == manifest("a")
        m._changed(Changed(STREAM, "DELETED", record(2, "superseded", "a")))
        assert relists == [STREAM], "the last one going leaves nothing to read"
        await m.stop()

    asyncio.run(scenario())
