"""tripwire's SDK: declare what triggers a flow, and publish the events that do.

Flow authors use :func:`trigger`, :func:`trigger_on_finish` and :func:`schedule`, and
:func:`target` for where runs execute;
publishers use :func:`publish` and :func:`safe_publish` (each with an ``.aio``
form), and :class:`EventSource` turns other buses' messages into events; a running
flow reads :data:`current` and can pause for a signal with :func:`wait_for_event`,
which :class:`Event` gives from outside.
"""

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
from triggers.settings import Settings
from triggers.signals import Event, wait_for_event
from triggers.sources import EventSource

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
