"""shale_template: a template plugin: copy this folder, rename the package, implement hooks."""

# the monorepo's one version; a plugin of your own has its own: __version__ = "0.1.0"
from shale import __version__

__all__ = ["__version__"]
