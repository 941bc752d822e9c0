"""Package layout that pyproject.toml cannot express on its own.

Every ``orca*`` package is discovered as usual; the repository's top-level
``skypilot_templates/`` directory is installed as ``orca.skypilot_templates`` so the
launch templates ship inside the package (``orca.launchers.templates`` loads them from there).
All other metadata lives in pyproject.toml.
"""

from setuptools import find_namespace_packages, setup

setup(
    packages=find_namespace_packages(include=["orca*"]) + ["orca.skypilot_templates"],
    package_dir={"orca.skypilot_templates": "skypilot_templates"},
)
