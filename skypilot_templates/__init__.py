"""SkyPilot task templates for orca workers (Jinja2, rendered with StrictUndefined).

This directory is installed as the package ``orca.skypilot_templates`` (see setup.py)
and read through ``orca.launchers.templates``.
"""
