"""Bootstrap run from ``segment_pendo_plugin.pth`` at every interpreter start.

It imports only ``sys`` and ``os`` (already loaded by ``site``) and installs a meta-path finder
that patches ``segment.analytics.client.Client`` right after that module is executed. A
process that never imports the Segment SDK pays for one environment lookup and one list insert.
"""

import os
import sys

TARGET = "segment.analytics.client"


class _PatchingLoader:
    """Wraps the real loader of the SDK's client module and patches it after execution."""

    def __init__(self, loader):  # type: ignore[no-untyped-def]
        self._loader = loader

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self._loader.create_module(spec)

    def exec_module(self, module):  # type: ignore[no-untyped-def]
        self._loader.exec_module(module)
        try:
            from pendo_plugin.bridge import patch_client_class

            patch_client_class(module.Client)
        except Exception as exc:  # never break the app's import of the SDK
            sys.stderr.write(f"pendo_plugin: not activated: {type(exc).__name__}: {exc}\n")

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._loader, name)


class _PostImportFinder:
    """Finds nothing itself; wraps the loader of the SDK's client module when it is found."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname != TARGET:
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


def activate() -> None:
    """Install the post-import hook once, or patch at once if the SDK is already imported."""
    if os.environ.get("PENDO_AUTOLOAD", "1").strip() == "0":
        return
    loaded = sys.modules.get(TARGET)
    if loaded is not None and hasattr(loaded, "Client"):
        from pendo_plugin.bridge import patch_client_class

        patch_client_class(loaded.Client)
        return
    if not any(isinstance(finder, _PostImportFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _PostImportFinder())


try:
    activate()
except Exception as _exc:  # a broken bootstrap must never stop the interpreter
    sys.stderr.write(f"pendo_plugin: autoload failed: {type(_exc).__name__}: {_exc}\n")
