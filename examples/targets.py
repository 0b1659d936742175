"""Where runs execute: a command line (Metaflow, pyflyte, dbt...), a web hook, a Kubernetes
Job or an Argo Workflow.

tripwire dev examples/targets.py
tripwire publish report_requested -p day=2026-11-23
tripwire runs logs <run name>       # the command's output, or the hook's answers
"""

import os
import sys

from triggers import target, trigger


# Each argv item is one argument: a value such as '"; rm -rf /' stays one harmless string.
# No shell ever runs. Exit code 0 is SUCCEEDED; another fails the run (USER) and retries.
@target(
    "command://",
    argv=[sys.executable, "-c", "import sys; print('report for', sys.argv[1])", "{day}"],
)
@trigger(event="report_requested", retries=1, max_concurrency=2)
def command_report(day: str = "") -> None: ...


# The body is a JSON template; "{rows}" alone keeps the number a number. 5xx, 429 and
# connection errors are retried (Retry-After honoured); the body is signed with the key in
# $CI_HOOK_KEY on the worker; Idempotency-Key is the run name.
@target(
    os.environ.get("CI_HOOK_URL", "https://ci.example.com/hooks/run"),
    body={"job": "rebuild", "day": "{day}", "rows": "{rows}", "run": "{run_name}"},
    success=[200, 201, 202],
    retries=5,
    backoff="2s",
    timeout="30s",
    hmac_secret_env="CI_HOOK_KEY",
)
@trigger(event="rebuild_requested", rate_limit="10/m")
def ci_rebuild(day: str = "", rows: int = 0) -> None: ...


# A Job per attempt in namespace "data" (pip install 'tripwire[k8s]'; the worker runs in the
# cluster or has TRIPWIRE_KUBE_API_URL). The image holds tripwire and this file.
@target("k8s://data", image="registry.example.com/flows:1.4", cpu="2", memory="4Gi")
@trigger(event="features_ready", max_concurrency=4)
def train_model(day: str = "", epochs: int = 10) -> None:
    print(f"training on {day} for {epochs} epochs")  # runs in the pod


# An Argo Workflow of the WorkflowTemplate "nightly-etl", parameters as its arguments.
@target("argo://data/nightly-etl", parameters={"day": "{day}", "run": "{run_name}"})
@trigger(event="raw_landed")
def nightly_etl(day: str = "") -> None: ...


if __name__ == "__main__":
    from triggers.declarations import flow_spec

    for flow in (command_report, ci_rebuild, train_model, nightly_etl):
        spec = flow_spec(flow)
        print(f"{spec.name}: {spec.target} {spec.target_options}")
