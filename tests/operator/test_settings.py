"""OperatorSettings: the one place the environment is read."""

from __future__ import annotations

import pytest

from blueprintd.operator.settings import OperatorSettings


def test_environment_values_are_read_and_flags_win() -> None:
    env = {
        "BLUEPRINTD_NAMESPACE": "fleet",
        "BLUEPRINTD_CHART_MIRRORS": "https://a=http://127.0.0.1:1,https://b=http://127.0.0.1:2",
        "BLUEPRINTD_DRIFT_RESYNC": "5",
        "BLUEPRINTD_OPERATOR_USER": "op",
        "BLUEPRINTD_GIT_ALLOW_FILE_URLS": "1",
        "BLUEPRINTD_DEBUG": "1",
        "KUBECONFIG": "/tmp/mgmt.kubeconfig",
    }
    s = OperatorSettings.from_env(env, namespace=None, metrics_port=9090)
    assert s.namespace == "fleet" and s.metrics_port == 9090
    assert s.chart_mirrors == {"https://a": "http://127.0.0.1:1", "https://b": "http://127.0.0.1:2"}
    assert (s.drift_resync_seconds, s.operator_user, s.git_allow_file_urls, s.debug) == (5.0, "op", True, True)
    assert s.kubeconfig == "/tmp/mgmt.kubeconfig"
    assert OperatorSettings.from_env(env, kubeconfig="/flag").kubeconfig == "/flag"


def test_an_empty_environment_gives_the_defaults() -> None:
    assert OperatorSettings.from_env({}) == OperatorSettings()


def test_a_bad_number_names_the_variable() -> None:
    with pytest.raises(ValueError, match="BLUEPRINTD_DRIFT_RESYNC='soon'"):
        OperatorSettings.from_env({"BLUEPRINTD_DRIFT_RESYNC": "soon"})


def test_sharding_settings_from_flags_and_environment() -> None:
    s = OperatorSettings.from_env({"BLUEPRINTD_SHARDS": "1", "POD_NAME": "blueprintd-7d9-x2"})
    assert (s.sharding, s.replica_id, s.shard_lease_seconds) == (True, "blueprintd-7d9-x2", 15)
    s = OperatorSettings.from_env({"POD_NAME": "p"}, sharding=True, replica_id="r1", shard_lease_seconds=4)
    assert (s.replica_id, s.shard_lease_seconds) == ("r1", 4)


def test_sharded_replicas_without_an_id_get_distinct_ones() -> None:
    a, b = (OperatorSettings.from_env({}, sharding=True) for _ in range(2))
    assert a.replica_id and b.replica_id and a.replica_id != b.replica_id


def test_sharding_refuses_peering_and_too_short_leases() -> None:
    with pytest.raises(ValueError, match="--shards and --peering exclude each other"):
        OperatorSettings.from_env({}, sharding=True, peering="blueprintd")
    with pytest.raises(ValueError, match="--shard-lease-seconds 2: must be at least 3"):
        OperatorSettings.from_env({}, sharding=True, shard_lease_seconds=2)


def test_backoff_numbers_come_from_the_environment_and_flags_win() -> None:
    s = OperatorSettings.from_env({"BLUEPRINTD_BACKOFF_BASE": "2", "BLUEPRINTD_BACKOFF_CAP": "60"})
    assert (s.backoff.base_seconds, s.backoff.cap_seconds) == (2.0, 60.0)
    s = OperatorSettings.from_env({"BLUEPRINTD_BACKOFF_BASE": "2"}, backoff_cap_seconds=30.0, backoff_base_seconds=None)
    assert (s.backoff.base_seconds, s.backoff.cap_seconds) == (2.0, 30.0)
    assert (OperatorSettings().backoff.base_seconds, OperatorSettings().backoff.cap_seconds) == (5.0, 300.0)


def test_a_cap_below_the_base_is_refused_naming_both_variables() -> None:
    with pytest.raises(ValueError, match="BLUEPRINTD_BACKOFF_BASE, BLUEPRINTD_BACKOFF_CAP"):
        OperatorSettings.from_env({"BLUEPRINTD_BACKOFF_BASE": "60", "BLUEPRINTD_BACKOFF_CAP": "10"})
    with pytest.raises(ValueError, match="BLUEPRINTD_BACKOFF_CAP='later'"):
        OperatorSettings.from_env({"BLUEPRINTD_BACKOFF_CAP": "later"})
