"""``blueprintd facts --local`` on a real GPU machine, field by field against nvidia-smi.

Runs only where a GPU and driver exist (``pytest -m gpu``; the marker is deselected by
default). It runs the installed CLI exactly as a user would and compares every field users
see with ``nvidia-smi -q -x`` (plus ``--query-gpu=compute_cap``, which the XML lacks), so a
wrong struct field, unit or name mapping in discovery shows up here first.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from typing import Any

import pytest

pytestmark = pytest.mark.gpu

MIB = 1 << 20


def _text(node: ET.Element, path: str) -> str:
    found = node.find(path)
    return (found.text or "").strip() if found is not None else ""


def _alnum(text: str) -> str:
    return "".join(c for c in text.lower() if c.isalnum())


def _smi() -> tuple[ET.Element, dict[str, str]]:
    xml = subprocess.run(["nvidia-smi", "-q", "-x"], check=True, capture_output=True, text=True).stdout
    caps = subprocess.run(
        ["nvidia-smi", "--query-gpu=pci.bus_id,compute_cap", "--format=csv,noheader"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    cc = {}
    for line in caps.splitlines():
        if line.strip():
            bus, cap = (p.strip() for p in line.split(","))
            cc[bus.lower()] = cap
    return ET.fromstring(xml), cc


def _ours() -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "blueprintd", "facts", "--local", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_local_facts_match_nvidia_smi() -> None:
    root, compute_caps = _smi()
    ours = _ours()
    assert ours["partial"] is False and ours["errors"] == []
    assert ours["driverVersion"] == _text(root, "driver_version")
    assert ours["cudaDriverVersion"] == _text(root, "cuda_version")
    smi_gpus = root.findall("gpu")
    assert ours["deviceCount"] == int(_text(root, "attached_gpus")) == len(smi_gpus)
    assert len(ours["gpus"]) == len(smi_gpus)

    by_bus = {g.get("id", "").lower(): g for g in smi_gpus}
    for gpu in ours["gpus"]:
        smi = by_bus[gpu["pciBusId"].lower()]
        where = f"GPU {gpu['index']} ({gpu['pciBusId']})"
        assert gpu["uuid"] == _text(smi, "uuid"), where
        assert gpu["productName"] == _text(smi, "product_name"), where
        assert gpu["minor"] == int(_text(smi, "minor_number")), where
        assert _alnum(gpu["brand"]) == _alnum(_text(smi, "product_brand")), where
        # nvidia-smi says "Hopper" / "Ada Lovelace"; we use GFD's family names.
        arch = _text(smi, "product_architecture")
        assert gpu["architecture"] == "-".join(arch.lower().split()), where
        assert gpu["pciBusId"].lower() == _text(smi, "pci/pci_bus_id").lower(), where
        assert int(gpu["pciDeviceId"], 16) == int(_text(smi, "pci/pci_device_id"), 16), where
        assert gpu["computeCapability"] == compute_caps[gpu["pciBusId"].lower()], where
        smi_total_mib = int(_text(smi, "fb_memory_usage/total").split()[0])
        # Both read NVML's framebuffer total; allow rounding of the MiB display only.
        assert abs(gpu["memoryBytes"] // MIB - smi_total_mib) <= 1, where

        current, pending = _text(smi, "mig_mode/current_mig"), _text(smi, "mig_mode/pending_mig")
        mig_capable = current not in ("", "N/A")
        assert gpu["migCapable"] is mig_capable, where
        assert gpu["migEnabled"] is (current == "Enabled"), where
        assert gpu["migPending"] is (mig_capable and pending != current), where
        smi_migs = smi.findall("mig_devices/mig_device")
        assert len(gpu["migDevices"]) == len(smi_migs), where
        smi_sms = sorted(
            int(_text(m, "device_attributes/shared/multiprocessor_count") or 0) for m in smi_migs
        )
        assert sorted(m["multiprocessors"] for m in gpu["migDevices"]) == smi_sms, where
        for mig in gpu["migDevices"]:
            assert mig["uuid"].startswith("MIG-") and mig["profile"], where
