"""The SDK plugin system: patches each supported SDK, calls the ``segment_*`` hooks; no Pendo in here."""
