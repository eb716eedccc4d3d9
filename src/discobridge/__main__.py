"""`python -m discobridge` runs the same CLI as the `discobridge` command."""

from discobridge.cli import main

raise SystemExit(main())
