"""Sharding members over operator replicas by Kubernetes Leases (docs/ha.md).

``decide`` holds the pure rules (who is live, who owns a member, who may touch it, who
leads); ``blueprintd.cluster.lease`` reads and writes the Leases; ``blueprintd.operator.sharding``
wires the two into the controller.
"""
