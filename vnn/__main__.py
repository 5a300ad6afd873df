"""``python -m vnn``: the ``vnn`` command line (see :mod:`vnn.cli`)."""

from vnn.cli import main

raise SystemExit(main())
