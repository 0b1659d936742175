"""The Helm chart renders, lints, and every manifest is valid Kubernetes (strict schemas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from triggers.kafka_security import KafkaSecurity
from triggers.settings import Settings

CHART = Path(__file__).resolve().parents[2] / "charts" / "tripwire"
VALUES = {
    "default": None,
    "egress": CHART / "ci" / "egress-values.yaml",
    "external-postgres": CHART / "ci" / "external-postgres-values.yaml",
    "sources": CHART / "ci" / "sources-values.yaml",
    "tls": CHART / "ci" / "tls-values.yaml",
}
KUBERNETES = "1.30"


def rendered(values_file: Path | None) -> list[dict[str, Any]]:
    values = yaml.safe_load(values_file.read_text()) if values_file else {}
    chart = helm.Chart.load(CHART)
    out = chart.render(values, name="tw", namespace="tripwire", is_install=True)
    return [
        doc
        for path, text in sorted(out.items())
        if not path.endswith("NOTES.txt")
        for doc in yaml.safe_load_all(text)
        if doc
    ]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.mark.parametrize("case", list(VALUES))
def test_the_chart_lints_and_renders_valid_manifests(case: str) -> None:
    values_file = VALUES[case]
    values = yaml.safe_load(values_file.read_text()) if values_file else None
    report = helm.lint(CHART, values, strict=True)
    assert report["errors"] == [] and all(m["severity"] < 2 for m in report["messages"]), report
    docs = rendered(values_file)
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES, strict=True)
    assert {d["kind"] for d in docs} >= {"Deployment", "ConfigMap", "ServiceAccount", "Service"}


@pytest.mark.parametrize("case", list(VALUES))
def test_pods_run_as_non_root_on_a_read_only_root_with_the_database_from_a_secret(
    case: str,
) -> None:
    for deployment in by_kind(rendered(VALUES[case]), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        [container] = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        env = {e["name"]: e for e in container["env"]}
        assert "secretKeyRef" in env["TRIPWIRE_DATABASE_URL"]["valueFrom"]


def test_the_api_has_health_probes_and_its_tokens_come_from_a_secret() -> None:
    [api] = [
        d for d in by_kind(rendered(None), "Deployment") if d["metadata"]["name"].endswith("api")
    ]
    [container] = api["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = {e["name"]: e for e in container["env"]}
    assert env["TRIPWIRE_API_TOKENS"]["valueFrom"]["secretKeyRef"]["name"] == "tripwire-api-tokens"


def test_the_egress_block_the_chart_writes_is_one_the_engine_accepts(tmp_path: Path) -> None:
    [config] = by_kind(rendered(VALUES["egress"]), "ConfigMap")
    path = tmp_path / "cloud_events.yaml"
    path.write_text(config["data"]["cloud_events.yaml"])
    events = Settings(cloud_events_file=path).cloud_events
    assert events.enable and events.type == "aws"
    assert events.kinds == {"workflow", "task"}


def test_workers_may_create_jobs_and_workflows_in_the_target_namespaces_only() -> None:
    docs = rendered(VALUES["egress"])
    roles = by_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["data", "ml"]
    assert not by_kind(docs, "ClusterRole") and not by_kind(rendered(None), "Role")
    groups = {g for r in roles for rule in r["rules"] for g in rule["apiGroups"]}
    assert groups == {"batch", "", "argoproj.io"}


def test_dedicated_sources_run_apart_and_workers_leave_them_alone() -> None:
    def deployments(case: str) -> dict[str, dict[str, Any]]:
        found = by_kind(rendered(VALUES[case]), "Deployment")
        return {
            d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0] for d in found
        }

    shared = deployments("default")
    assert "tw-tripwire-sources" not in shared
    assert "TRIPWIRE_SOURCES" not in {e["name"] for e in shared["tw-tripwire-worker"]["env"]}
    apart = deployments("sources")
    assert apart["tw-tripwire-sources"]["args"] == ["sources", "run", "--verbose"]
    env = {e["name"]: e for e in apart["tw-tripwire-sources"]["env"]}
    assert "secretKeyRef" in env["RABBITMQ_PASSWORD"]["valueFrom"]
    worker = {e["name"]: e.get("value") for e in apart["tw-tripwire-worker"]["env"]}
    assert worker["TRIPWIRE_SOURCES"] == "false"
    assert Settings(sources=worker["TRIPWIRE_SOURCES"]).sources is False  # type: ignore[arg-type]


def test_kafka_security_comes_from_secrets_and_is_a_combination_the_engine_accepts() -> None:
    docs = rendered(VALUES["tls"])
    [config] = by_kind(docs, "ConfigMap")
    for deployment in by_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        # The login and the key's password come from Secrets, never from the ConfigMap
        env = {
            e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e
        }
        assert env["TRIPWIRE_KAFKA_SASL_USERNAME"] == {"name": "kafka-login", "key": "username"}
        assert env["TRIPWIRE_KAFKA_SASL_PASSWORD"] == {"name": "kafka-login", "key": "password"}
        assert env["TRIPWIRE_KAFKA_SSL_KEY_PASSWORD"] == {
            "name": "kafka-tls",
            "key": "client.key.password",
        }
        # The TLS files are the Secret's, mounted read-only where the settings point
        [volume] = [v for v in pod["volumes"] if v["name"] == "kafka-tls"]
        assert volume["secret"]["secretName"] == "kafka-tls"
        [mount] = [m for m in container["volumeMounts"] if m["name"] == "kafka-tls"]
        assert mount == {"name": "kafka-tls", "mountPath": "/etc/kafka-tls", "readOnly": True}
    data = config["data"]
    assert not any("PASSWORD" in name or "USERNAME" in name for name in data)
    assert data["TRIPWIRE_KAFKA_SSL_CA_FILE"] == "/etc/kafka-tls/ca.crt"
    # And what the pods get is a combination the engine accepts (the files exist in the pod)
    security = KafkaSecurity(
        protocol=data["TRIPWIRE_KAFKA_SECURITY_PROTOCOL"],
        sasl_mechanism=data["TRIPWIRE_KAFKA_SASL_MECHANISM"],
        sasl_username="from-the-secret",
        sasl_password="from-the-secret",
        ssl_ca_file=data["TRIPWIRE_KAFKA_SSL_CA_FILE"],
        ssl_cert_file=data["TRIPWIRE_KAFKA_SSL_CERT_FILE"],
        ssl_key_file=data["TRIPWIRE_KAFKA_SSL_KEY_FILE"],
        ssl_key_password="from-the-secret",
    )
    assert security.problem(files=False) is None


def test_the_postgresql_ca_is_mounted_from_a_secret_where_pgsslrootcert_points() -> None:
    docs = rendered(VALUES["tls"])
    [config] = by_kind(docs, "ConfigMap")
    assert config["data"]["PGSSLROOTCERT"] == "/etc/postgres-tls/ca.crt"
    for deployment in by_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        [volume] = [v for v in pod["volumes"] if v["name"] == "postgres-tls"]
        assert volume["secret"]["secretName"] == "postgres-ca"
        [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "postgres-tls"]
        assert mount["mountPath"] == "/etc/postgres-tls" and mount["readOnly"] is True


def test_by_default_kafka_is_plaintext_and_no_tls_secret_is_mounted() -> None:
    docs = rendered(None)
    [config] = by_kind(docs, "ConfigMap")
    assert config["data"]["TRIPWIRE_KAFKA_SECURITY_PROTOCOL"] == "PLAINTEXT"
    assert not [
        k
        for k in config["data"]
        if k.startswith(("TRIPWIRE_KAFKA_SSL", "TRIPWIRE_KAFKA_SASL", "PGSSL"))
    ]
    for deployment in by_kind(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert not {"kafka-tls", "postgres-tls"} & {v["name"] for v in pod["volumes"]}
