"""All of tripwire's configuration, in one pydantic-settings class.

Every field reads the environment variable ``TRIPWIRE_<FIELD>``. When
``TRIPWIRE_KAFKA_BOOTSTRAP`` is unset and ``$TRIPWIRE_HOME/dev.json`` exists
(written by ``tripwire dev``), the broker address, database and API token come
from that file, so a second terminal reaches the dev engine with no setup.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from triggers.cloud_events import CloudEventsConfig, load_cloud_events
from triggers.database_url import asyncpg_url, url_problem
from triggers.errors import ConfigurationError
from triggers.kafka_security import KafkaSecurity, Mechanism, Protocol

__all__ = ["DEV_FILE_NAME", "ApiToken", "Settings", "WebhookSource", "get_settings"]

DEV_FILE_NAME = "dev.json"


def _about(field: str) -> str | None:
    """The description of a KafkaSecurity field, which a TRIPWIRE_KAFKA_* setting sets."""
    return KafkaSecurity.model_fields[field].description


class ApiToken(BaseModel):
    """A bearer token the HTTP API accepts, kept as a hash (`tripwire api token` makes one)."""

    name: str = Field(description="Who or what uses it; shown in logs and metrics, never secret.")
    hash: str = Field(
        pattern=r"^sha256:[0-9a-f]{64}$", description="`sha256:` and the token's SHA-256, hex."
    )
    scope: Literal["publish", "read", "admin"] = Field(
        description="publish: publish events and signal runs; read: read everything; "
        "admin: everything, abort and recover included."
    )
    events: list[str] = Field(
        default_factory=list, description="Event-name prefixes it may publish; empty: any."
    )
    projects: list[str] = Field(
        default_factory=list, description="Projects whose runs and sensors it may use; empty: any."
    )


class WebhookSource(BaseModel):
    """A webhook sender that signs its bodies (HMAC-SHA256, GitHub's scheme)."""

    secret: SecretStr = Field(description="The shared secret the sender signs with.")
    events: list[str] = Field(
        default_factory=list, description="Event-name prefixes it may publish; empty: any."
    )


class Settings(BaseSettings):
    """tripwire configuration; each field is ``TRIPWIRE_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="TRIPWIRE_", extra="ignore")

    home: Path = Field(
        Path(".tripwire"),
        description=(
            "State directory: SQLite store, run logs, and dev.json of a running `tripwire dev`."
        ),
    )
    kafka_bootstrap: str | None = Field(
        None,
        description=(
            "Kafka bootstrap servers, `host:port[,host:port]`. Unset: use the broker of the "
            "`tripwire dev` recorded in $TRIPWIRE_HOME/dev.json, if any."
        ),
    )
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy async URL of the run store, e.g. "
            "`postgresql+asyncpg://user@host/db`; over TLS add `?sslmode=verify-full` and give "
            "the CA in PGSSLROOTCERT (docs/deploy.md). Unset: SQLite at "
            "$TRIPWIRE_HOME/tripwire.db."
        ),
    )
    objects_url: str | None = Field(
        None,
        description=(
            "Object store for run inputs, an fsspec URL such as `s3://bucket/tripwire` "
            "(needs `pip install 'tripwire[aws]'`; AWS_* variables, AWS_ENDPOINT_URL included, "
            "configure the client). Unset: the folder $TRIPWIRE_HOME/objects."
        ),
    )
    project: str = Field("default", description="Project that deployed flows and runs belong to.")
    domain: str = Field("development", description="Domain (environment) within the project.")
    api_url: str | None = Field(None, description="Base URL of the tripwire HTTP API.")
    api_token: SecretStr | None = Field(
        None,
        description="An admin bearer token: what clients send, and one more token `tripwire api` "
        "accepts (give its hash in API_TOKENS instead to keep it out of the server's environment).",
    )
    api_tokens: list[ApiToken] = Field(
        default_factory=list,
        description='Tokens the API accepts, as JSON: `[{"name": "etl", "hash": "sha256:...", '
        '"scope": "publish", "events": ["orders."]}]`; `tripwire api token` makes entries.',
    )
    webhook_sources: dict[str, WebhookSource] = Field(
        default_factory=dict,
        description="Webhook senders that sign bodies instead of sending a token, as JSON: "
        '`{"github": {"secret": "...", "events": ["github."]}}`; they call '
        "`POST /api/v1/events/NAME?source=github` with `X-Tripwire-Signature: sha256=HMAC`.",
    )
    api_host: str = Field("127.0.0.1", description="Address `tripwire api` listens on.")
    api_port: int = Field(8080, ge=0, le=65535, description="Port of `tripwire api` (0: any free).")
    api_rate_limit: float = Field(
        200.0, gt=0, description="Requests per second each token may make, on average."
    )
    api_rate_burst: int = Field(
        400, ge=1, description="Requests a token may make at once before the rate applies."
    )
    api_max_body_bytes: int = Field(
        4 * 1024 * 1024,
        gt=0,
        description="Largest request body the API reads (a batch of events); more gets 413.",
    )

    topic_events: str = Field("tripwire.events", description="Topic that published events go to.")
    topic_run_requests: str = Field(
        "tripwire.run-requests",
        description="Topic from sensors to the launcher, keyed by run name.",
    )
    topic_run_events: str = Field(
        "tripwire.run-events", description="Topic of run lifecycle CloudEvents."
    )
    topic_dead_letter: str = Field(
        "tripwire.dead-letter",
        description="Malformed records from the events topic, with the reason in a header.",
    )
    topic_sensor_offers: str = Field(
        "tripwire.sensor-offers",
        description=(
            "Internal: events for multi-event sensors, partitioned by sensor and correlation key."
        ),
    )
    topic_sensor_state: str = Field(
        "tripwire.sensor-state",
        description="Internal: changelog of the correlation state, replayed on recovery.",
    )
    topic_partitions: int = Field(
        4, ge=1, description="Partitions for topics that tripwire creates itself."
    )

    topic_replication: int = Field(
        1, ge=1, description="Replication factor of topics tripwire creates (3 on a real cluster)."
    )

    publish_timeout: float = Field(
        10.0, gt=0, description="Seconds `publish()` waits for the broker's acknowledgement."
    )
    max_payload_bytes: int = Field(
        1024 * 1024, gt=0, description="Largest accepted event payload, in bytes of JSON."
    )
    source: str = Field(
        "tripwire://publish", description="Default CloudEvent `source` of published events."
    )

    kafka_session_timeout: float = Field(
        6.0,
        gt=0,
        description=(
            "Consumer group session timeout, seconds. Kept low on purpose: the embedded Tansu "
            "broker holds a JoinGroup for half of it, and 6 s is real Kafka's minimum."
        ),
    )
    kafka_fetch_max_wait_ms: int = Field(
        100,
        ge=1,
        description=(
            "Longest a fetch waits for data, ms. Tansu answers after about half of it even "
            "when data arrives sooner, so this bounds the latency of every hop."
        ),
    )
    kafka_security_protocol: Protocol = Field("PLAINTEXT", description=_about("protocol"))
    kafka_sasl_mechanism: Mechanism | None = Field(None, description=_about("sasl_mechanism"))
    kafka_sasl_username: SecretStr | None = Field(None, description=_about("sasl_username"))
    kafka_sasl_password: SecretStr | None = Field(None, description=_about("sasl_password"))
    kafka_sasl_oauth_token_provider: str | None = Field(
        None, description=_about("sasl_oauth_token_provider")
    )
    kafka_ssl_ca_file: Path | None = Field(None, description=_about("ssl_ca_file"))
    kafka_ssl_cert_file: Path | None = Field(None, description=_about("ssl_cert_file"))
    kafka_ssl_key_file: Path | None = Field(None, description=_about("ssl_key_file"))
    kafka_ssl_key_password: SecretStr | None = Field(None, description=_about("ssl_key_password"))
    kafka_ssl_check_hostname: bool = Field(True, description=_about("ssl_check_hostname"))
    sensor_status_interval: float = Field(
        1.0,
        ge=0,
        description=(
            "Seconds between a worker's reports of held events and filter counts to the store "
            "(what `tripwire sensors status` shows); 0 turns reporting off."
        ),
    )
    sources: bool = Field(
        True,
        description=(
            "Whether `tripwire worker` also runs the deployed event sources (`tripwire "
            "sources run` runs them on their own)."
        ),
    )
    source_lease: float = Field(
        15.0,
        gt=0,
        description=(
            "Seconds a process holds an MQTT or PostgreSQL source, which one process at a "
            "time reads, without renewing; another takes it over this long after a crash."
        ),
    )
    deploy_poll_interval: float = Field(
        2.0,
        gt=0,
        description=(
            "Seconds between a worker's looks at the store for new, changed or retired "
            "flows (`tripwire deploy`); it starts serving them without a restart."
        ),
    )
    snapshot_interval: float = Field(
        60.0,
        gt=0,
        description=(
            "Seconds after which a worker snapshots the correlation state of a partition "
            "that changed since its last snapshot; it also snapshots once the changelog it "
            "wrote since then is as big as the state, and when it gives a partition away. "
            "A worker that takes a partition over replays only the changelog after the "
            "latest snapshot."
        ),
    )
    absence_grace: float = Field(
        5.0,
        gt=0,
        description=(
            "The lateness an event may have and still count (a producer's clock, its "
            "linger): the sensor stage marks its progress this much behind what it has "
            "routed, so absences and debounced fires are decided about this long after "
            "their window or quiet period ends."
        ),
    )
    schedule_grace: float = Field(
        60.0,
        gt=0,
        description=(
            "Seconds after its time that a schedule tick still counts as on time (at most one "
            "period of its schedule). Later ticks were missed, and the trigger's `catchup` "
            "decides which of them run."
        ),
    )
    kube_api_url: str | None = Field(
        None,
        description=(
            "URL of the Kubernetes API server that runs `k8s://` and `argo://` targets. Unset: "
            "the cluster the worker runs in, through its service account."
        ),
    )
    kube_image: str | None = Field(
        None,
        description=(
            "Image of `k8s://` runs whose target names none: it must hold tripwire and the "
            "flows' code."
        ),
    )
    kube_poll_interval: float = Field(
        2.0,
        gt=0,
        description="Seconds between looks at the Jobs and Workflows of k8s:// and argo:// runs.",
    )
    remote_poll_interval: float = Field(
        2.0,
        gt=0,
        description=(
            "Seconds between looks at the remote runs of prefect://, airflow://, dagster:// "
            "and flyte:// targets."
        ),
    )
    prefect_url: str | None = Field(
        None,
        description=(
            "Prefect API of `prefect:///FLOW/DEPLOYMENT` targets, which name no server, e.g. "
            "http://prefect:4200/api. Unset: Prefect's own PREFECT_API_URL."
        ),
    )
    airflow_url: str | None = Field(
        None,
        description=(
            "Airflow of `airflow:///DAG_ID` targets, which name no server, e.g. "
            "https://airflow.example (the API is under /api/v2)."
        ),
    )
    dagster_url: str | None = Field(
        None,
        description=(
            "Dagster webserver of `dagster:///JOB` targets, which name no server, e.g. "
            "http://dagster:3000 (the GraphQL API is under /graphql)."
        ),
    )
    signal_poll_interval: float = Field(
        0.5,
        gt=0,
        description=(
            "Seconds between a waiting run's looks at the store for its signal "
            "(`wait_for_event`): the most a signal waits to reach the run."
        ),
    )
    run_start: Literal["spawn", "fork"] = Field(
        "fork",
        description=(
            "How a local run's process starts: `spawn`, a new interpreter that imports the "
            "SDK and the flow (a few hundred ms of CPU); `fork`, forked from a warm parent "
            'per flow module and revision that imported them once (README, "Warm starts"). A '
            "flow whose module starts threads at import is spawned either way."
        ),
    )
    max_parallel_runs: int = Field(
        8,
        ge=1,
        description=(
            "Runs a worker's local launcher executes at once; more wait in QUEUED and start, "
            "oldest first, as runs end (on this worker or another)."
        ),
    )
    system_retries: int = Field(
        0,
        ge=0,
        le=100,
        description="How often a run whose process died without a word (killed by a signal, "
        "out of memory, its worker lost) is started again, apart from the flow's own "
        "`retries` for exceptions; like Flyte's system retries. 0: such a run fails (SYSTEM).",
    )
    worker_host: str | None = Field(
        None,
        description="The host a worker names itself after (default: the machine's hostname). "
        "Workers of one host tell whether another still runs from its process; workers of "
        "different hosts from its heartbeat. Give each machine its own name.",
    )
    worker_heartbeat: float = Field(
        5.0,
        gt=0,
        le=300,
        description="Seconds between a worker's heartbeats in the run store. One silent for "
        "six of them is gone: any live worker settles the runs it left.",
    )
    run_context: Path | None = Field(
        None,
        description="Set by the engine in a run's process: the JSON file describing the run.",
    )
    cloud_events: CloudEventsConfig = Field(
        default_factory=CloudEventsConfig,
        description=(
            "Egress of run lifecycle events to Kafka, SNS/SQS or Pub/Sub, as JSON in Flyte's "
            'shape: {"enable": true, "type": "aws", "eventsPublisher": {"topicName": '
            '"arn:...", "eventTypes": ["all"]}} (see docs/egress.md). Off by default.'
        ),
    )
    cloud_events_file: Path | None = Field(
        None,
        description="A YAML file with a `cloud_events:` block; used instead of CLOUD_EVENTS.",
    )

    @model_validator(mode="before")
    @classmethod
    def _cloud_events_from_file(cls, data: Any) -> Any:
        # Read before validation, so that the block is checked like any other setting.
        if isinstance(data, dict) and data.get("cloud_events_file"):
            data = {**data, "cloud_events": load_cloud_events(Path(data["cloud_events_file"]))}
        return data

    @model_validator(mode="after")
    def _fill_from_dev_file(self) -> Settings:
        if self.kafka_bootstrap is not None:
            return self
        info = read_dev_file(self.home)
        if info is None:
            return self
        self.kafka_bootstrap = info.get("kafka_bootstrap")
        if self.database_url is None:
            self.database_url = info.get("database_url")
        if self.api_url is None:
            self.api_url = info.get("api_url")
        if self.api_token is None and info.get("api_token"):
            self.api_token = SecretStr(info["api_token"])
        return self

    @model_validator(mode="after")
    def _connections_valid(self) -> Settings:
        if (problem := self.kafka_security.problem()) is not None:
            raise ConfigurationError(problem)
        if self.database_url and (problem := url_problem(self.database_url)) is not None:
            raise ConfigurationError(problem)
        return self

    @property
    def kafka_security(self) -> KafkaSecurity:
        """How tripwire's own Kafka connections authenticate and encrypt (TRIPWIRE_KAFKA_*)."""
        return KafkaSecurity(
            **{
                field: getattr(self, f"kafka_{'security_' if field == 'protocol' else ''}{field}")
                for field in _KAFKA_SECURITY_FIELDS
            }
        )

    def kafka_connection(self, bootstrap: str | None = None) -> dict[str, Any]:
        """aiokafka's arguments for tripwire's cluster: ``bootstrap_servers`` (``bootstrap``,
        else the configured one) and the security ones, for any producer, consumer or admin.

        Raises:
            ConfigurationError: no broker is configured, or a certificate, key or token
                provider cannot be loaded.
        """
        from triggers.kafka_client import client_options  # aiokafka: only where one connects

        return {
            "bootstrap_servers": bootstrap or self.require_bootstrap(),
            **client_options(self.kafka_security),
        }

    @property
    def dev_file(self) -> Path:
        """Where `tripwire dev` records its broker, store and API."""
        return self.home / DEV_FILE_NAME

    @property
    def store_url(self) -> str:
        """The run store URL, defaulting to SQLite under the home directory; libpq's
        ``sslmode=`` of a PostgreSQL URL is asyncpg's ``ssl=`` (docs/deploy.md)."""
        if self.database_url:
            return asyncpg_url(self.database_url)
        return f"sqlite+aiosqlite:///{(self.home / 'tripwire.db').resolve()}"

    @property
    def objects_root(self) -> str:
        """The object store URL, defaulting to a folder under the home directory."""
        if self.objects_url:
            return self.objects_url.rstrip("/")
        return (self.home / "objects").resolve().as_uri()

    def require_bootstrap(self) -> str:
        """Return the Kafka bootstrap address or explain how to provide one."""
        if not self.kafka_bootstrap:
            raise ConfigurationError(
                "No Kafka broker is configured: set TRIPWIRE_KAFKA_BOOTSTRAP=host:port, "
                f"or start `tripwire dev` so that {self.dev_file} exists."
            )
        return self.kafka_bootstrap


def read_dev_file(home: Path) -> dict[str, Any] | None:
    """Return the contents of ``home/dev.json``, or None when no dev engine recorded one."""
    path = home / DEV_FILE_NAME
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigurationError(
            f"{path} is unreadable ({exc}); delete it if no `tripwire dev` is running."
        ) from exc
    return data if isinstance(data, dict) else None


def get_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and dev.json), with explicit overrides on top.

    Without overrides, settings built before are reused (a copy) while what they were read
    from is unchanged: the ``TRIPWIRE_*`` variables, the working folder (a relative home)
    and the files they name. Building them reads every source anew, a few milliseconds,
    which a loop of ``publish()`` calls would otherwise pay per event.
    """
    global _last
    if overrides:
        return Settings(**overrides)
    key = _sources_now()
    if _last is None or _last[0] != key:
        _last = (key, Settings())
    return _last[1].model_copy(deep=True)


_last: tuple[tuple[Any, ...], Settings] | None = None  # what get_settings() built last


def _sources_now() -> tuple[Any, ...]:
    """What :func:`get_settings` reads, as it is now: equal while the settings are."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith("TRIPWIRE_")))
    values = {k.upper(): v for k, v in env}
    home = Path(values.get("TRIPWIRE_HOME", ".tripwire"))
    files = [home / DEV_FILE_NAME]
    if values.get("TRIPWIRE_CLOUD_EVENTS_FILE"):
        files.append(Path(values["TRIPWIRE_CLOUD_EVENTS_FILE"]))
    return (env, os.getcwd(), *(_stamp(f) for f in files))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


_KAFKA_SECURITY_FIELDS = tuple(KafkaSecurity.model_fields)


def reference_markdown() -> str:
    """The configuration reference page (docs/configuration.md), generated from Settings."""
    lines = [
        "# Configuration reference",
        "",
        "Generated from `triggers/settings.py` by `python docs/generate.py`; do not edit.",
        "",
        "Every setting is an environment variable. When `TRIPWIRE_KAFKA_BOOTSTRAP` is unset",
        "and `$TRIPWIRE_HOME/dev.json` exists (a running `tripwire dev`), the broker address",
        "and the store come from that file.",
        "",
        "| variable | default | meaning |",
        "|---|---|---|",
    ]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "unset" if default is None else f"`{default}`"
        if isinstance(default, Path):
            shown = f"`{default.as_posix()}`"
        description = (field.description or "").replace("|", "\\|")
        lines.append(f"| `TRIPWIRE_{name.upper()}` | {shown} | {description} |")
    return "\n".join(lines) + "\n"
