"""Settings: one frozen, typed object built from defaults, a settings file (``file.py``),
``TIERQ_*`` variables and flags (``sources.py``), checked at construction (``checks.py``)."""

from tierq.config.errors import ConfigError
from tierq.config.settings import Settings, from_mapping
from tierq.config.sources import from_env, from_sources

__all__ = ["ConfigError", "Settings", "from_env", "from_mapping", "from_sources"]
