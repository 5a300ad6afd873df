"""``python -m vnn.cli``: the ``vnn`` command line."""

from vnn.cli import main

raise SystemExit(main())
