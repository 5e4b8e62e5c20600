"""`python -m runbook_executors run|list` (see runbook_executors.entrypoint)."""

from runbook_executors.entrypoint import main

raise SystemExit(main())
