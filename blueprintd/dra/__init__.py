"""The bundled DRA (Dynamic Resource Allocation) driver for NVIDIA GPUs.

A kubelet plugin compatible with NVIDIA's DRA driver for GPUs (driver ``gpu.nvidia.com``,
its device names, attributes, opaque configs and CDI ids), written in Python so blueprintd
can ship, test and demo GPU allocation end to end, and so its ResourceSlices are the best
source of hardware facts for overlays. One module per concept:

=====================  =================================================================
``proto/``             our .proto files (registration, DRA v1, v1beta1) + generated code
``paths``              node layout: sockets, checkpoint, MPS dirs under the plugin root
``slices``             PURE: inventory -> ResourceSlice dicts; the publication plan
``publisher``          applies the plan to the API server (no write when unchanged)
``config``             opaque GpuConfig / MigDeviceConfig validation
``claims``             reads ResourceClaims from the API server
``prepare``            NodePrepare/NodeUnprepareResources logic (version-free)
``executor``           time-slicing / MPS via nvidia-smi (real) or recorded (tests, fakes)
``cdi``                CDI device and claim specs
``checkpoint``         prepared claims on disk (checksummed, atomic) across restarts
``registration``       kubelet plugin-watcher Registration service
``service``            DRAPlugin gRPC servicer, served as v1 and v1beta1
``server``             the two unix-socket gRPC servers, start/stop ordering
``plugin``             the process: discovery, publication, serving, resync, signals
=====================  =================================================================

Run it with ``blueprintd dra-plugin`` (chart ``charts/blueprintd-dra-driver``).
"""
