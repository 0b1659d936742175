"""The one exception tree of tripwire.

Every error a user can meet derives from :class:`TripwireError`, so
``except TripwireError`` catches all of them. Messages say what happened,
to what, and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "BrokerError",
    "ConfigurationError",
    "ConsumedError",
    "DeclarationError",
    "EventDecodeError",
    "IllegalTransitionError",
    "KafkaSecurityError",
    "PublishError",
    "RunNotFoundError",
    "SignalError",
    "SignalNotFoundError",
    "SignalTimeoutError",
    "StoreError",
    "StoreUnavailableError",
    "TriggerError",
    "TripwireError",
]


class TripwireError(Exception):
    """Raised for any tripwire failure; the base of all the others."""


class ConfigurationError(TripwireError):
    """Raised when settings or the environment are invalid or incomplete."""


class KafkaSecurityError(ConfigurationError):
    """Raised when a Kafka broker refuses a connection's TLS or SASL (certificate, login)."""


class DeclarationError(TripwireError):
    """Raised when a decorator, a flow or a trigger is declared wrongly.

    Raised while a flow or a source is declared, it is located there
    (:mod:`triggers.locations`): its message starts ``path:line: flow 'NAME': ``.
    """

    path: str | None = None
    """The file of the declaration, once located (relative to the current folder when
    under it)."""
    line: int | None = None
    """The line of the declaration in ``path``: its decorator's, when known."""
    reason: str | None = None
    """The message without its location, once located."""

    def locate(self, path: str, line: int | None, subject: str) -> None:
        """Put ``path:line: subject: `` before the message, unless it is located already."""
        if self.path is not None:
            return
        self.path, self.line, self.reason = path, line, str(self)
        at = f"{path}:{line}" if line is not None else path
        self.args = (f"{at}: {subject}: {self}", *self.args[1:])


class PublishError(TripwireError):
    """Raised when an event cannot be published: bad payload, broker down or timed out."""


class EventDecodeError(TripwireError):
    """Raised when a Kafka record is not a valid tripwire CloudEvent."""


class TriggerError(TripwireError):
    """Raised when an event matched a trigger but could not become a run (e.g. bad types)."""


class BrokerError(TripwireError):
    """Raised when the embedded broker cannot be found, started or reached."""


class StoreError(TripwireError):
    """Raised when the run store cannot be reached or rejects an operation."""


class StoreUnavailableError(StoreError):
    """Raised when the run store cannot be reached right now (refused, dropped, restarting):
    worth trying again, unlike a StoreError the database answered."""


class RunNotFoundError(StoreError):
    """Raised when a run name is not in the run store."""


class ClaimLostError(StoreError):
    """Raised when a worker would begin an attempt of a run that another worker took over,
    because the others took this one for gone (its heartbeats stopped)."""


class IllegalTransitionError(StoreError):
    """Raised when a run is asked to move to a phase its current phase does not allow."""


class ConsumedError(StoreError):
    """Raised when a run would consume an event another run of its sensor already consumed."""


class SignalError(TripwireError):
    """Raised when a signal cannot be given or awaited: no run waits for that event, it
    was signalled already, its wait timed out, or its run ended."""


class SignalTimeoutError(SignalError):
    """Raised in a run by ``wait_for_event`` when no signal arrived within its timeout."""


class SignalNotFoundError(SignalError):
    """Raised when a run does not wait, and never waited, for the named event."""
