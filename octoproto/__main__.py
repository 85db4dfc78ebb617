"""``python -m octoproto``: forwards to the command line in ``octoproto.adapters.cli``."""

from octoproto.adapters.cli import main

raise SystemExit(main())
