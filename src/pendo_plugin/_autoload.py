"""Bootstrap run from ``segment_pendo_plugin.pth`` at every interpreter start.

It imports only ``sys`` and ``os`` (already loaded by ``site``) and installs a meta-path finder
that patches the ``Client`` of each supported SDK right after its client module is executed. A
process that never imports one of those SDKs pays for one environment lookup and one list insert.
"""

import os
import sys

# the client modules of segment-analytics-python 2.x, analytics-python 1.4 and rudder-sdk-python 2.x
# (pendo_plugin.sdks.SDKS, spelled out here so that this module imports nothing)
TARGETS = ("segment.analytics.client", "analytics.client", "rudderstack.analytics.client")


def _patch(module):  # type: ignore[no-untyped-def]
    client = getattr(module, "Client", None)
    if isinstance(client, type) and hasattr(client, "_enqueue"):
        from pendo_plugin.bridge import patch_client_class

        patch_client_class(client)


class _PatchingLoader:
    """Wraps the real loader of an SDK's client module and patches it after execution."""

    def __init__(self, loader):  # type: ignore[no-untyped-def]
        self._loader = loader

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self._loader.create_module(spec)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        self._loader.exec_module(module)
        try:
            _patch(module)
        except Exception as exc:  # never break the app's import of the SDK
            sys.stderr.write(f"pendo_plugin: not activated: {type(exc).__name__}: {exc}\n")

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._loader, name)


class _PostImportFinder:
    """Finds nothing itself; wraps the loader of an SDK's client module when it is found."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname not in TARGETS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _PatchingLoader(spec.loader)  # type: ignore[assignment]
                return spec
        return None


def watch() -> None:
    """Patch the SDKs already imported, and install the post-import hook (once) for the others."""
    for name in TARGETS:
        loaded = sys.modules.get(name)
        if loaded is not None:
            _patch(loaded)
    if not any(isinstance(finder, _PostImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())


def activate() -> None:
    """``watch()``, unless ``PENDO_AUTOLOAD=0``."""
    if os.environ.get("PENDO_AUTOLOAD", "1").strip() == "0":
        return
    watch()


try:
    activate()
except Exception as _exc:  # a broken bootstrap must never stop the interpreter
    sys.stderr.write(f"pendo_plugin: autoload failed: {type(_exc).__name__}: {_exc}\n")
