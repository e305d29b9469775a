"""slotstream: track how bookable capacity changes over time.

This package holds what every component shares: the wire contract, topic names,
settings and the ``slotstream`` CLI. It imports no component.
"""

__version__ = "0.1.0"
