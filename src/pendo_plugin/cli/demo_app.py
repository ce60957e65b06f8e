"""The demo's sample app: an ordinary Segment app that never mentions Pendo.

``pendo-plugin demo`` runs this file by path in a fresh interpreter, with ``PENDO_*`` variables pointing at
its sandbox. The app imports only ``segment.analytics``: Pendo is written to because the installed
package's ``.pth`` bootstrap patched the SDK. Where that bootstrap is missing (an editable install without
the ``.pth``) or ``PENDO_AUTOLOAD=0``, it calls ``pendo_plugin.install()`` instead and says so.
Only after sending does it import ``pendo_plugin``, to print the plugin's counters for the demo.
"""

import json
import os
import sys

# Run by path, this file's directory (the package) is sys.path[0]; its modules (config, testing,
# openfeature, ...) must not shadow top-level modules of the same name.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import segment.analytics as analytics
from segment.analytics import client as segment_client

USER = "user-42"
ACCOUNT = "acme"


def activate() -> str:
    """``autoload`` when the ``.pth`` bootstrap already patched the SDK, else ``install``."""
    if getattr(segment_client.Client, "_pendo_plugin_patched", False):
        return "autoload"
    import pendo_plugin

    pendo_plugin.install()
    return "install"


def send() -> None:
    """What a small SaaS backend sends to Segment; the last track call opts out of Pendo."""
    analytics.identify(USER, {"email": "ada@example.com", "plan": "pro", "logins": 12,
                              "createdAt": "2024-01-15T09:30:00Z"})
    analytics.group(USER, ACCOUNT, {"name": "Acme Inc", "plan": "enterprise", "seats": 50})
    analytics.track(USER, "Report Exported", {"format": "csv", "rows": 1200})
    analytics.track(USER, "Plan Upgraded", {"previous plan": "free", "new plan": "pro"})
    analytics.track(USER, "Dashboard Viewed", {"dashboard": "Revenue"})
    analytics.track(USER, "Password Changed", {"method": "email"}, integrations={"Pendo": False})
    analytics.page(USER, "Docs", "Getting Started")
    analytics.flush()


def main() -> int:
    """Send, flush, then print how the plugin was activated and its counters (one JSON line)."""
    activation = activate()
    analytics.write_key = "demo-write-key"
    analytics.host = os.environ["PENDO_DEMO_SEGMENT_HOST"]
    send()
    import pendo_plugin

    print(json.dumps({"activation": activation, "stats": pendo_plugin.stats()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
