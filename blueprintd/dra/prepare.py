"""NodePrepareResources / NodeUnprepareResources: the driver's node-side work, version-free.

The gRPC servicers (v1 and v1beta1) translate wire messages to :class:`ClaimRef` and call
:class:`Preparer`; everything else is here. The contract the kubelet expects, and how it is
kept:

* **Every claim gets an answer, failures are per claim.** A raised exception would make the
  kubelet drop the whole response; each claim is handled in its own ``try`` and its failure
  goes into its ``error`` string.
* **Idempotent.** A claim already in the checkpoint is answered from the checkpoint without
  touching the GPU again; unpreparing an unknown claim succeeds.
* **Crash safe.** The checkpoint records a claim as ``PrepareStarted`` with the sharing it is
  about to apply *before* applying it, and ``PrepareCompleted`` after. A plugin killed in
  between finds the record after restart: a repeated prepare undoes the half-done work and
  starts over, an unprepare undoes what was recorded.
* **Serialized.** One lock around each call: the kubelet may call concurrently (several pods
  starting), and two prepares must never interleave checkpoint writes or sharing changes.

Opaque configs: entries of ``status.allocation.devices.config[]`` for this driver, class
configs before claim configs, later entries winning. An entry naming ``requests`` applies to
those requests (``req`` also covers its sub-requests ``req/sub``) and must fit the device
type (GpuConfig for GPUs, MigDeviceConfig for MIG devices), or the claim fails. An entry
naming no request applies to every device of the type it configures.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from blueprintd.api.facts import NodeGpuInventory
from blueprintd.dra.cdi import CdiWriter, ClaimDevice, claim_cdi_id, device_cdi_id
from blueprintd.dra.checkpoint import (
    Checkpoint,
    CheckpointStore,
    PreparedClaim,
    PreparedDevice,
    TimeSliceSetting,
)
from blueprintd.dra.claims import ClaimReadError, ClaimSource
from blueprintd.dra.config import (
    ConfigError,
    DeviceConfig,
    GpuConfig,
    MigDeviceConfig,
    SharingStrategy,
    TimeSliceInterval,
    parse_config,
)
from blueprintd.dra.executor import ExecutorError, MpsDaemon, SharingExecutor
from blueprintd.dra.slices import published_devices

log = logging.getLogger(__name__)

PREPARE_STARTED = "PrepareStarted"
PREPARE_COMPLETED = "PrepareCompleted"


@dataclass(frozen=True)
class ClaimRef:
    """What the kubelet sends per claim."""

    namespace: str
    name: str
    uid: str


@dataclass(frozen=True)
class PrepareResult:
    devices: tuple[PreparedDevice, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class NodeDevice:
    """A published device as prepare needs it."""

    name: str
    uuid: str
    device_type: str  # gpu | mig
    parent_uuid: str = ""


def node_devices(inventory: NodeGpuInventory) -> dict[str, NodeDevice]:
    """Published devices by name (the same rules as the ResourceSlices)."""
    out: dict[str, NodeDevice] = {}
    for name, gpu, mig in published_devices(inventory):
        if mig is None:
            out[name] = NodeDevice(name, gpu.uuid, "gpu")
        else:
            out[name] = NodeDevice(name, mig.uuid, "mig", parent_uuid=gpu.uuid)
    return out


class PrepareError(Exception):
    """A claim cannot be prepared; the message is the per-claim error."""


@dataclass(frozen=True)
class _Result:
    request: str
    device: NodeDevice
    pool: str
    share_id: str = ""  # DeviceRequestAllocationResult.shareID: the device is shared between claims


@dataclass
class _Group:
    """Devices of one claim that share one effective config (one MPS daemon, one time slice)."""

    config: DeviceConfig
    results: list[_Result] = field(default_factory=list)


def _request_matches(request: str, requests: Sequence[str]) -> bool:
    return request in requests or request.split("/", 1)[0] in requests


def _opaque_configs(allocation: Mapping[str, Any], driver: str) -> list[tuple[str, list[str], Any]]:
    """(where, requests, parameters) for our driver: FromClass first, then FromClaim, in order."""
    entries = list(enumerate((allocation.get("devices") or {}).get("config") or []))
    ordered = [e for e in entries if e[1].get("source") == "FromClass"] + [
        e for e in entries if e[1].get("source") != "FromClass"
    ]
    out = []
    for index, entry in ordered:
        opaque = entry.get("opaque") or {}
        if opaque.get("driver") != driver:
            continue
        where = f"status.allocation.devices.config[{index}] ({entry.get('source', 'FromClaim')})"
        out.append((where, list(entry.get("requests") or []), opaque.get("parameters")))
    return out


def _effective_configs(
    results: Sequence[_Result], configs: Sequence[tuple[str, list[str], Any]]
) -> list[_Group]:
    """Each result's winning config, grouped by config entry (pure; raises PrepareError)."""
    parsed: list[tuple[str, list[str], DeviceConfig]] = []
    for where, requests, params in configs:
        try:
            parsed.append((where, requests, parse_config(params, where=where)))
        except ConfigError as exc:
            raise PrepareError(str(exc)) from None
    groups: dict[object, _Group] = {}
    for res in results:
        chosen: tuple[str, DeviceConfig] | None = None
        for where, requests, cfg in parsed:
            fits = isinstance(cfg, GpuConfig) == (res.device.device_type == "gpu")
            if requests:
                if not _request_matches(res.request, requests):
                    continue
                if not fits:
                    raise PrepareError(
                        f"{where}: {cfg.kind} cannot configure {res.device.device_type} device "
                        f"{res.device.name} (request {res.request!r}); use "
                        f"{'GpuConfig' if res.device.device_type == 'gpu' else 'MigDeviceConfig'}"
                    )
            elif not fits:
                continue
            chosen = (where, cfg)
        key: object = chosen[0] if chosen else f"default-{res.device.device_type}"
        if key not in groups:
            default: DeviceConfig = GpuConfig() if res.device.device_type == "gpu" else MigDeviceConfig()
            groups[key] = _Group(chosen[1] if chosen else default)
        groups[key].results.append(res)
    return list(groups.values())


class Preparer:
    """Prepares and unprepares claims for one driver on one node."""

    def __init__(
        self,
        *,
        driver_name: str,
        node_name: str,
        claims: ClaimSource,
        cdi: CdiWriter,
        executor: SharingExecutor,
        checkpoints: CheckpointStore,
        mps_root: Path,
        inventory: NodeGpuInventory | None = None,
    ) -> None:
        self.driver_name = driver_name
        self.node_name = node_name
        self.claims = claims
        self.cdi = cdi
        self.executor = executor
        self.checkpoints = checkpoints
        self.mps_root = mps_root
        self._lock = threading.Lock()
        self._devices: dict[str, NodeDevice] = {}
        self._checkpoint = checkpoints.load()
        if inventory is not None:
            self.update_inventory(inventory)

    def update_inventory(self, inventory: NodeGpuInventory) -> None:
        """Swap in a fresh discovery result (called by the resync loop)."""
        devices = node_devices(inventory)
        with self._lock:
            self._devices = devices

    @property
    def prepared_claims(self) -> dict[str, PreparedClaim]:
        with self._lock:
            return dict(self._checkpoint.claims)

    # --- prepare --------------------------------------------------------------------------

    def prepare(self, claims: Sequence[ClaimRef]) -> dict[str, PrepareResult]:
        out: dict[str, PrepareResult] = {}
        with self._lock:
            for ref in claims:
                try:
                    out[ref.uid] = PrepareResult(devices=self._prepare_one(ref))
                except PrepareError as exc:
                    log.warning("prepare %s/%s (%s): %s", ref.namespace, ref.name, ref.uid, exc)
                    out[ref.uid] = PrepareResult(error=str(exc))
                except Exception as exc:  # never let one claim fail the whole response
                    log.exception("prepare %s/%s (%s) failed", ref.namespace, ref.name, ref.uid)
                    out[ref.uid] = PrepareResult(error=f"internal error: {exc}")
        return out

    def _save(self, cp: Checkpoint) -> None:
        self.checkpoints.save(cp)
        self._checkpoint = cp

    def _with(self, claim: PreparedClaim, state: str) -> Checkpoint:
        claims = dict(self._checkpoint.claims)
        claims[claim.uid] = replace(claim, state=state)
        return Checkpoint(claims)

    def _without(self, uid: str) -> Checkpoint:
        claims = dict(self._checkpoint.claims)
        claims.pop(uid, None)
        return Checkpoint(claims)

    def _prepare_one(self, ref: ClaimRef) -> tuple[PreparedDevice, ...]:
        known = self._checkpoint.claims.get(ref.uid)
        if known is not None and known.state == PREPARE_COMPLETED:
            if known.devices and not self.cdi.claim_spec_path(ref.uid).exists():
                self._write_claim_spec(known)  # CDI dir is often tmpfs: gone after reboot
            return known.devices
        if known is not None:  # a prepare was interrupted: undo and redo
            self._undo(known)
            self._save(self._without(ref.uid))

        claim = self._read_claim(ref)
        results = self._our_results(claim)
        allocation = claim["status"]["allocation"]
        groups = _effective_configs(results, _opaque_configs(allocation, self.driver_name))

        time_slicing: list[TimeSliceSetting] = []
        daemons: list[MpsDaemon] = []
        mps_by_device: dict[str, MpsDaemon] = {}
        for index, group in enumerate(groups):
            sharing = group.config.sharing
            if sharing is None:
                continue
            uuids = tuple(dict.fromkeys(r.device.uuid for r in group.results))
            if sharing.strategy is SharingStrategy.MPS:
                base = self.mps_root / ref.uid / str(index)
                daemon = MpsDaemon(f"{ref.uid}-{index}", uuids, str(base / "pipe"), str(base / "log"))
                daemons.append(daemon)
                mps_by_device.update({r.device.name: daemon for r in group.results})
            elif isinstance(group.config, GpuConfig) and group.config.sharing is not None:
                time_slicing.append(TimeSliceSetting(uuids, group.config.sharing.interval))

        devices = self._prepared_devices(ref, results)
        record = PreparedClaim(
            uid=ref.uid,
            namespace=ref.namespace,
            name=ref.name,
            devices=devices,
            time_slicing=tuple(time_slicing),
            mps_daemons=tuple(daemons),
            cdi_spec_file=str(self.cdi.claim_spec_path(ref.uid)),
            mps_by_device={k: v.daemon_id for k, v in mps_by_device.items()},
        )
        # Record intent first: a crash while applying leaves something to undo, not a leak.
        self._save(self._with(record, PREPARE_STARTED))
        try:
            self._apply(record, groups)
            self._write_claim_spec(record)
        except ExecutorError as exc:
            self._undo(record)
            self._save(self._without(ref.uid))
            raise PrepareError(f"applying GPU sharing: {exc}") from None
        self._save(self._with(record, PREPARE_COMPLETED))
        return devices

    def _read_claim(self, ref: ClaimRef) -> dict[str, Any]:
        try:
            claim = self.claims.get_claim(ref.namespace, ref.name)
        except ClaimReadError as exc:
            raise PrepareError(str(exc)) from None
        uid = (claim.get("metadata") or {}).get("uid")
        if uid != ref.uid:
            raise PrepareError(
                f"ResourceClaim {ref.namespace}/{ref.name} has UID {uid}, the kubelet asked for {ref.uid}: "
                "the claim was deleted and recreated"
            )
        if not ((claim.get("status") or {}).get("allocation")):
            raise PrepareError(f"ResourceClaim {ref.namespace}/{ref.name} is not allocated")
        return claim

    def _our_results(self, claim: Mapping[str, Any]) -> list[_Result]:
        allocation = claim["status"]["allocation"]
        results: list[_Result] = []
        for res in (allocation.get("devices") or {}).get("results") or []:
            if res.get("driver") != self.driver_name or res.get("pool") != self.node_name:
                continue
            name = str(res.get("device"))
            device = self._devices.get(name)
            if device is None:
                raise PrepareError(
                    f"device {name} (request {res.get('request')!r}) is not available on node "
                    f"{self.node_name}: it may have been removed by a MIG re-layout"
                )
            results.append(
                _Result(str(res.get("request", "")), device, str(res.get("pool")), str(res.get("shareID") or ""))
            )
        return results

    def _prepared_devices(self, ref: ClaimRef, results: Sequence[_Result]) -> tuple[PreparedDevice, ...]:
        """One entry per (device, share): the kubelet keys prepared devices by pool, device and
        shareID, so a device shared twice in one claim (consumable capacity) is two entries."""
        by_key: dict[tuple[str, str], PreparedDevice] = {}
        for res in results:
            key = (res.device.name, res.share_id)
            prev = by_key.get(key)
            requests = (*prev.request_names, res.request) if prev else (res.request,)
            by_key[key] = PreparedDevice(
                request_names=tuple(dict.fromkeys(requests)),
                pool_name=res.pool,
                device_name=res.device.name,
                cdi_device_ids=(device_cdi_id(res.device.name), claim_cdi_id(ref.uid, res.device.name)),
                uuid=res.device.uuid,
                device_type=res.device.device_type,
                share_id=res.share_id,
            )
        return tuple(by_key.values())

    def _apply(self, record: PreparedClaim, groups: Sequence[_Group]) -> None:
        for setting in record.time_slicing:
            self.executor.set_time_slice(setting.gpu_uuids, setting.interval)
        configs = {}
        for index, group in enumerate(groups):
            sharing = group.config.sharing
            if sharing is not None and sharing.strategy is SharingStrategy.MPS:
                configs[f"{record.uid}-{index}"] = sharing.mps_config
        for daemon in record.mps_daemons:
            self.executor.start_mps(daemon, configs.get(daemon.daemon_id))

    def _write_claim_spec(self, record: PreparedClaim) -> None:
        daemons = {d.daemon_id: d for d in record.mps_daemons}
        # One CDI device per physical device, however many shares of it the claim holds.
        physical = {d.device_name: d for d in record.devices}
        self.cdi.write_claim_spec(
            record.uid,
            [
                ClaimDevice(d.device_name, d.uuid, daemons.get(record.mps_by_device.get(d.device_name, "")))
                for d in physical.values()
            ],
        )

    # --- unprepare ------------------------------------------------------------------------

    def unprepare(self, claims: Sequence[ClaimRef]) -> dict[str, str]:
        """Claim UID -> error ('' when done). Unknown claims are already unprepared."""
        out: dict[str, str] = {}
        with self._lock:
            for ref in claims:
                record = self._checkpoint.claims.get(ref.uid)
                if record is None:
                    out[ref.uid] = ""
                    continue
                try:
                    self._undo(record, strict=True)
                    self._save(self._without(ref.uid))
                    out[ref.uid] = ""
                except Exception as exc:
                    log.warning("unprepare %s/%s (%s): %s", ref.namespace, ref.name, ref.uid, exc)
                    out[ref.uid] = f"unprepare failed, will be retried: {exc}"
        return out

    def _undo(self, record: PreparedClaim, *, strict: bool = False) -> None:
        """Stop MPS, reset time slices, remove the claim's CDI spec and MPS dirs.

        ``strict`` re-raises the first executor failure (unprepare must be retried rather
        than forget a running daemon); cleanup after a failed prepare is best effort.
        """
        first: Exception | None = None
        for daemon in record.mps_daemons:
            try:
                self.executor.stop(daemon)
            except ExecutorError as exc:
                first = first or exc
        for setting in record.time_slicing:
            try:
                self.executor.set_time_slice(setting.gpu_uuids, TimeSliceInterval.DEFAULT)
            except ExecutorError as exc:
                first = first or exc
        if first is not None and strict:
            raise first
        self.cdi.remove_claim_spec(record.uid)
        shutil.rmtree(self.mps_root / record.uid, ignore_errors=True)
