"""``python -m lamina``: the same as the ``lamina`` console script."""

from lamina.cli import main

raise SystemExit(main())
