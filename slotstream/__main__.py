"""``python -m slotstream`` runs the CLI."""

from slotstream.cli import main

main()
