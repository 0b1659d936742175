"""The Helm chart renders, lints, and every manifest is valid Kubernetes (strict schemas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

from triggers.settings import Settings

CHART = Path(__file__).resolve().parents[2] / "charts" / "tripwire"
VALUES = {
    "default": None,
    "egress": CHART / "ci" / "egress-values.yaml",
    "external-postgres": CHART / "ci" / "external-postgres-values.yaml",
    "sources": CHART / "ci" / "sources-values.yaml",
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
