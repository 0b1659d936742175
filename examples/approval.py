"""A run that waits for a person: publish a model only once someone approves it.

    tripwire publish model_trained -p model=churn -p auc=0.91
    tripwire events list --run RUN                       # approval: RUNNING (bool)
    tripwire events signal approval --run RUN --value true

or from Python: `Event.get("approval", run_name).signal(True)`. The run stays
RUNNING while it waits; without a signal within the timeout it fails (USER,
SignalTimeoutError), and aborting it ends the wait.
"""

from triggers import current, trigger, wait_for_event


@trigger(event="model_trained")
def publish_model(model: str = "churn", auc: float = 0.0) -> None:
    if current.is_running:
        approved = wait_for_event("approval", type=bool, timeout="1h")
        threshold = wait_for_event("threshold", type=float, timeout="1h") if approved else None
    else:
        approved, threshold = True, 0.5  # run as a plain script: no one to ask
    if approved:
        print(f"publishing {model} (auc {auc}) with threshold {threshold}")
    else:
        print(f"{model} was not approved")


if __name__ == "__main__":
    publish_model()
