"""``python -m sensors`` is the ``tripwire`` command."""

from sensors.cli import main

main()
