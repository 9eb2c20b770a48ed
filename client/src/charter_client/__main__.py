"""``python -m charter_client …`` runs the ``charter`` command."""

from charter_client.cli import main

raise SystemExit(main())
