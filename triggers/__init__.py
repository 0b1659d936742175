"""tripwire's SDK: declare what triggers a flow, and publish the events that do.

Flow authors use :func:`trigger`, :func:`trigger_on_finish` and :func:`schedule`;
publishers use :func:`publish` and :func:`safe_publish` (each with an ``.aio``
form); a running flow reads :data:`current`.
"""

from triggers.current import TriggerEvent, current
from triggers.decorators import schedule, trigger, trigger_on_finish
from triggers.errors import (
    ConfigurationError,
    DeclarationError,
    PublishError,
    TriggerError,
    TripwireError,
)
from triggers.publish import publish, safe_publish
from triggers.settings import Settings

__all__ = [
    # declaring flows
    "trigger",
    "trigger_on_finish",
    "schedule",
    # publishing events
    "publish",
    "safe_publish",
    # inside a run
    "current",
    "TriggerEvent",
    # configuration
    "Settings",
    # errors
    "ConfigurationError",
    "DeclarationError",
    "PublishError",
    "TriggerError",
    "TripwireError",
]

__version__ = "0.1.0"
