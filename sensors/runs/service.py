"""The run service: how every run comes to be, whoever asks for it.

Sensors (through the launcher stage), `tripwire runs create` and the API all go
through :meth:`RunService.admit`: the run's inputs are written to the object
store, the run is persisted as QUEUED under its name (once: a name that exists
returns the existing run and starts nothing), and a new run is enqueued on
``tripwire.run-requests`` for a launcher to claim. Recovering a run creates
``NAME-r1`` (then ``-r2`` ...) with the same inputs and flow revision.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from sensors.core.sensor import run_policy, slug, target_fields
from sensors.core.wire import key_partition
from sensors.runs import batch
from sensors.runs.deploy import flow_revision
from sensors.runs.models import NewRun, RunRecord
from sensors.runs.objects import ObjectStore
from sensors.runs.phases import WorkflowPhase, is_terminal
from sensors.runs.store import RunStore
from triggers.errors import ConfigurationError, ConsumedError, RunNotFoundError, TriggerError
from triggers.normalize import did_you_mean
from triggers.params import ParameterSchema
from triggers.settings import Settings

__all__ = ["RunService"]

_RUN_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_RECOVERED = re.compile(r"^(?P<base>.+)-r(?P<n>\d+)$")


class RunService:
    """Creates, enqueues and recovers runs; see the module docs."""

    def __init__(
        self,
        settings: Settings,
        store: RunStore,
        objects: ObjectStore,
        producer: AIOKafkaProducer | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._objects = objects
        self._producer = producer

    async def create(
        self,
        flow: str,
        parameters: dict[str, Any],
        *,
        name: str | None = None,
        project: str,
        domain: str,
    ) -> tuple[RunRecord, bool]:
        """Create a run of a deployed flow; return it and whether this call created it.

        The run gets the retries, backoff and timeout of the flow's first trigger.

        Raises:
            RunNotFoundError: the flow is not deployed in the project and domain.
            TriggerError: the flow has no parameter of a given name, a parameter does not
                fit the flow's types, or a required one is missing; the message names each
                and the fix.
            ConfigurationError: the name is not a valid run name.
        """
        spec, revision = await flow_revision(self._store, flow, project=project, domain=domain)
        _refuse_unknown(spec.name, parameters, [param.name for param in spec.parameters])
        values = ParameterSchema(spec.parameters).coerce(parameters)
        if name is None:
            name = f"{slug(spec.name)}-{uuid.uuid4().hex[:12]}"
        elif not _RUN_NAME.match(name):
            raise ConfigurationError(
                f"invalid run name {name!r}: use lowercase letters, digits and '-', at most "
                "63 characters, starting and ending with a letter or digit."
            )
        request = NewRun(
            project=project,
            domain=domain,
            name=name,
            flow=spec.name,
            **target_fields(spec),
            entrypoint=spec.entrypoint.model_dump(),
            parameters=values,
            events=[],
            flow_revision=revision,
            # Retries and timeout are declared on triggers: a run by hand takes the first's.
            **run_policy(spec.triggers[0] if spec.triggers else None),
        )
        return await self.submit(request)

    async def submit(self, request: NewRun) -> tuple[RunRecord, bool]:
        """Admit a run and enqueue it for a launcher while it is QUEUED.

        A run that exists but was never claimed is enqueued again: its first request
        may have been lost (the producer failed after the run was stored). The
        launcher claims a run once, so a repeated request starts nothing more.
        """
        run, created = await self.admit(request)
        if run.phase == WorkflowPhase.QUEUED:
            await self._enqueue(run)
        return run, created

    async def admit(self, request: NewRun) -> tuple[RunRecord, bool]:
        """Write the run's inputs and persist it as QUEUED; an existing name is returned
        as it is, with nothing written.

        Raises:
            ConsumedError: another run of its sensor consumed one of the events it
                ``consumes``; the run was not created.
        """
        [answer] = await self.admit_many([request])
        if isinstance(answer, ConsumedError):
            raise answer
        return answer

    async def admit_many(
        self, requests: Sequence[NewRun]
    ) -> list[tuple[RunRecord, bool] | ConsumedError]:
        """:meth:`admit` for each of ``requests`` (distinct names), together: one query for
        the names that exist, the new runs' inputs written, and one transaction for the
        runs (see :mod:`sensors.runs.batch`). The answers are in the order of ``requests``:
        the run and whether this call created it, or the ConsumedError that refused it."""
        existing = await batch.runs_named(self._store, [request.key for request in requests])
        new = [request for request in requests if request.key not in existing]
        uris = await self._objects.put_many(
            [
                (
                    self._objects.inputs_key(*request.key),
                    {"parameters": request.parameters, "events": request.events},
                )
                for request in new
            ]
        )
        created = await batch.create_runs(
            self._store,
            [
                request.model_copy(update={"inputs_uri": uri})
                for request, uri in zip(new, uris, strict=True)
            ],
        )
        answers = dict(zip((request.key for request in new), created, strict=True))
        return [
            (existing[request.key], False) if request.key in existing else answers[request.key]
            for request in requests
        ]

    async def recover(
        self,
        name: str,
        *,
        project: str,
        domain: str,
        parameters: dict[str, Any] | None = None,
    ) -> RunRecord:
        """A new run, ``NAME-rN``, with the inputs and flow revision of run ``name``.

        Raises:
            RunNotFoundError: no such run.
            TriggerError: the flow has no parameter of a name in ``parameters``.
            ConfigurationError: the run has not finished, ``parameters`` differ from its
                inputs (create a new run for that), or its inputs are not kept.
        """
        original = await self._store.get_run(name, project=project, domain=domain)
        if not is_terminal(original.phase):
            raise ConfigurationError(
                f"run {name!r} is {original.phase}, not finished; recover it once it ends, or "
                f"abort it first: `tripwire runs abort {name}`."
            )
        if original.inputs_uri is None:
            raise ConfigurationError(
                f"run {name!r} predates kept inputs and cannot be recovered; create a new run "
                f"with `tripwire runs create {original.flow} -p ...`."
            )
        inputs = await self._objects.get_json(original.inputs_uri)
        if parameters is not None:
            # A run's inputs hold every parameter of its flow revision, defaults included.
            _refuse_unknown(original.flow, parameters, list(inputs["parameters"]))
        if parameters is not None and parameters != inputs["parameters"]:
            raise ConfigurationError(
                f"recover reruns run {name!r} with its own inputs, and these differ; create a "
                f"new run instead: `tripwire runs create {original.flow} -p key=value ...`."
            )
        # The run holds its flow revision's entrypoint and target: a copy runs that revision.
        request = original.model_copy(
            update={
                "name": await self._recovery_name(original),
                "parameters": inputs["parameters"],
                "events": inputs["events"],
                "recovered_from": original.name,
            }
        )
        run, _ = await self.submit(NewRun.model_validate(request.model_dump(include=_NEW_RUN)))
        return run

    async def _recovery_name(self, original: RunRecord) -> str:
        """``NAME-rN`` with the first free N, NAME being the run first recovered."""
        match = _RECOVERED.match(original.name)
        base = match.group("base") if match and original.recovered_from else original.name
        for n in itertools.count(1):
            name = f"{base}-r{n}"
            try:
                await self._store.get_run(name, project=original.project, domain=original.domain)
            except RunNotFoundError:
                return name
        raise AssertionError("unreachable")

    async def _enqueue(self, run: RunRecord) -> None:
        if self._producer is None:
            raise ConfigurationError("this run service has no producer to enqueue runs with")
        topic = self._settings.topic_run_requests
        partitions = len(await self._producer.partitions_for(topic))
        key = run.name.encode()
        value = NewRun.model_validate(run.model_dump(include=_NEW_RUN)).model_dump_json()
        await self._producer.send_and_wait(
            topic, value.encode(), key=key, partition=key_partition(key, partitions)
        )


def _refuse_unknown(flow: str, parameters: Iterable[str], known: list[str]) -> None:
    """Raise TriggerError naming each of ``parameters`` the flow does not have, and its own.

    Events may carry fields no parameter takes; a run asked for by name may not: a
    misspelt parameter would silently run with its default.
    """
    unknown = [key for key in parameters if key not in known]
    if not unknown:
        return
    names = ", ".join(f"{key!r}{did_you_mean(key, known)}" for key in unknown)
    its = f"its parameters are: {', '.join(known)}" if known else "it takes none"
    plural = "s" if len(unknown) > 1 else ""
    raise TriggerError(f"flow {flow!r} has no parameter{plural} {names}; {its}")


_NEW_RUN = set(NewRun.model_fields)
