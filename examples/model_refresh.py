"""Retrain a model when its features are rebuilt, with an explicit mapping.

An explicit mapping turns default matching off. A value starting with `$` is
a JSONPath into the payload; otherwise it names a top-level field.

    tripwire publish features_ready -p how_many_days=7 \
        -p 'meta={"timestamp": "2026-11-23T06:00:00Z"}'
"""

from triggers import current, trigger


@trigger(
    event={
        "name": "features_ready",
        "parameters": {"window": "how_many_days", "latest": "$.meta.timestamp"},
    }
)
def model_refresh(latest: str = "2023-05-01", window: int = 3) -> None:
    print(f"run {current.run_name}: training on {window} days up to {latest}")
