"""CLI command groups, one module per area; each exposes `register(app)`."""

import signal

# The signals that end a process by default (Ctrl-C, kill, a closed terminal or SSH session,
# Ctrl-\). A long-running command (a simulator, the dashboard, `pump watch`) turns each into
# its own clean stop: a pump it started is stopped, a link it made is removed.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
