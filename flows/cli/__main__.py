"""`python -m flows.cli`: the `docflow` command."""

from flows.cli import main

raise SystemExit(main())
