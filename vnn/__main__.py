"""``python -m vnn``: the digits demo (see :mod:`vnn.demo`)."""

from vnn.demo import main

raise SystemExit(main())
