"""Drift: event-driven detection of changes to what Blueprints own, and the response to them.

Pure core: ``detect`` (what differs, per object / Helm release / node), ``report`` (the
DriftReport's entries and history), ``admission`` (the ValidatingAdmissionPolicy of mode
``block``); Helm's release Secrets are decoded by ``cluster.helmrecords``. Adapters: ``watch`` (list +
watch streams per member cluster), ``respond`` (restores and guards) and ``monitor`` (the
``DriftMonitor`` the operator owns, tying them together).
"""
