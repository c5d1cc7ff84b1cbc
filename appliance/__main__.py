"""`python -m appliance` is the `atp` command."""

from appliance.cli import main

raise SystemExit(main())
