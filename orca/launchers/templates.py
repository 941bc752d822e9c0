"""Render orca's launch templates (Jinja2, StrictUndefined) from the installed package.

Templates live in the repository's top-level ``skypilot_templates/`` directory, which is
installed as the package ``orca.skypilot_templates`` (setup.py maps it), so an installed
orca renders exactly the files in the repository. A variable a template uses but the
caller did not pass is an error (:class:`~orca.errors.TemplateError`), never an empty string.

Filters besides Jinja2's own: ``shquote`` (``shlex.quote``, for values placed in shell scripts).
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.meta
import yaml

from orca.errors import TemplateError

TEMPLATE_PACKAGE = "orca.skypilot_templates"


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(TEMPLATE_PACKAGE, ""),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["shquote"] = lambda value: shlex.quote(str(value))
    return env


def template_names() -> list[str]:
    """Every shipped template (``*.yaml.j2``)."""
    return sorted(n for n in _environment().list_templates() if n.endswith(".yaml.j2"))


def required_variables(name: str) -> set[str]:
    """Every variable the template ``name`` reads (loop variables excluded)."""
    env = _environment()
    try:
        source, _, _ = env.loader.get_source(env, name)
        return set(jinja2.meta.find_undeclared_variables(env.parse(source)))
    except jinja2.TemplateNotFound as exc:
        raise TemplateError("no such template", template=name) from exc
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"template is broken: {exc}", template=name) from exc


def render(name: str, **variables: Any) -> str:
    """The template ``name`` rendered with ``variables``; any missing variable raises TemplateError."""
    missing = required_variables(name) - variables.keys()
    if missing:
        raise TemplateError(f"template variables missing: {', '.join(sorted(missing))}", template=name)
    try:
        return _environment().get_template(name).render(**variables)
    except jinja2.UndefinedError as exc:
        raise TemplateError(f"template variable missing: {exc.message}", template=name) from exc
    except jinja2.TemplateNotFound as exc:
        raise TemplateError("no such template", template=name) from exc
    except jinja2.TemplateError as exc:
        raise TemplateError(f"template is broken: {exc}", template=name) from exc


def render_config(name: str, **variables: Any) -> dict:
    """The rendered template parsed as YAML (a SkyPilot task config)."""
    text = render(name, **variables)
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError(f"rendered template is not valid YAML: {exc}", template=name) from exc
    if not isinstance(config, dict):
        raise TemplateError("rendered template is not a mapping", template=name)
    return config
