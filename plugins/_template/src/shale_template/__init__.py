"""shale_template: a template plugin: copy this folder, rename the package, implement hooks."""

__version__ = "0.1.0"
