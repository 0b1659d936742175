"""tripwire's SDK: declare what triggers a flow, and publish the events that do.

Flow authors use :func:`trigger`, :func:`trigger_on_finish` and :func:`schedule`, and
:func:`target` for where runs execute;
publishers use :func:`publish` and :func:`safe_publish` (each with an ``.aio``
form), and :class:`EventSource` turns other buses' messages into events; a running
flow reads :data:`current` and can pause for a signal with :func:`wait_for_event`,
which :class:`Event` (Flyte 2's :class:`Condition`) gives from outside.
"""

from typing import TYPE_CHECKING

from triggers.current import TriggerEvent, current
from triggers.decorators import schedule, trigger, trigger_on_finish
from triggers.errors import (
    ConfigurationError,
    DeclarationError,
    PublishError,
    SignalError,
    SignalTimeoutError,
    TriggerError,
    TripwireError,
)
from triggers.placement import resources, target
from triggers.publish import publish, safe_publish
from triggers.signals import Condition, Event, wait_for_event
from triggers.sources import EventSource

if TYPE_CHECKING:
    from triggers.settings import Settings

__all__ = [
    # declaring flows
    "trigger",
    "trigger_on_finish",
    "schedule",
    "target",
    "resources",
    # publishing events
    "publish",
    "safe_publish",
    # events from other buses
    "EventSource",
    # inside a run
    "current",
    "TriggerEvent",
    # signals: runs that wait for an event
    "wait_for_event",
    "Event",
    "Condition",
    # configuration
    "Settings",
    # errors
    "ConfigurationError",
    "DeclarationError",
    "PublishError",
    "SignalError",
    "SignalTimeoutError",
    "TriggerError",
    "TripwireError",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # The one name imported on first use: pydantic-settings costs more than the rest of
    # the SDK together (0.15 s), and a run, a publisher or `tripwire --help` may never
    # read settings (issue: a light SDK). Everything else is imported above, by name.
    if name == "Settings":
        from triggers.settings import Settings

        return Settings
    raise AttributeError(f"module 'triggers' has no attribute {name!r}")
