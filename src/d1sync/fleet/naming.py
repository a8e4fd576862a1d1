"""A tenant's D1 database name, from the ``--name`` template and the file's name.

The template is a :meth:`str.format` string over three fields: ``{stem}`` (the file name without its
suffix, ``acme`` for ``acme.db``), ``{name}`` (the whole file name) and ``{folder}`` (the name of the folder
that holds it). The default is ``{stem}``. Whatever it gives is then made a valid D1 name by one
conservative rule, narrower than what D1 accepts so that a name works on every account and in every
tool (wrangler, the dashboard, URLs):

* lowercase ASCII letters, digits and ``-`` only: letters are lowercased, every run of other characters
  (``_``, ``.``, spaces, non-ASCII) becomes one ``-``; no ``-`` at either end;
* at most 64 characters: a longer name keeps its first 55 and ends with ``-`` and 8 hex digits of the
  SHA-256 of the whole, so two long names that share a beginning stay apart;
* a name with nothing left (``___.db``) becomes ``tenant-`` and those 8 hex digits.

Two files may still come to the same name (``Acme.db`` and ``acme.db``): the fleet binds the first one (in
file-name order) and reports the other as a clash in its status row, never sharing a database.
"""

from __future__ import annotations

import hashlib
import re
import string
from pathlib import Path

from d1sync.errors import UsageError

__all__ = ["DEFAULT_TEMPLATE", "MAX_NAME", "check_template", "database_name", "valid_name"]

DEFAULT_TEMPLATE = "{stem}"
MAX_NAME = 64
_FIELDS = frozenset({"stem", "name", "folder"})
_OTHER = re.compile(r"[^a-z0-9]+")
_VALID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def check_template(template: str) -> str:
    """``template`` if it is usable, else UsageError naming the fields it may use."""
    try:
        fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
    except ValueError as exc:
        raise UsageError(f"--name {template!r} is not a valid template: {exc}") from exc
    unknown = sorted(fields - _FIELDS)
    if unknown or not fields:
        raise UsageError(
            f"--name {template!r} must use {{stem}}, {{name}} or {{folder}}"
            + (f", not {{{unknown[0]}}}" if unknown else ""),
            hint="e.g. --name 'app-{stem}'",
        )
    return template


def valid_name(name: str) -> bool:
    """Whether ``name`` already follows the rule (the module docstring)."""
    return bool(_VALID.match(name))


def database_name(path: Path, template: str = DEFAULT_TEMPLATE) -> str:
    """The D1 database name of the tenant file ``path`` (see the module docstring).

    Example::

        database_name(Path("tenants/Acme Corp.db"))             # 'acme-corp'
        database_name(Path("tenants/acme.db"), "app-{stem}")    # 'app-acme'
    """
    raw = check_template(template).format(stem=path.stem, name=path.name, folder=path.parent.name)
    clean = _OTHER.sub("-", raw.lower()).strip("-")
    digest = hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    if not clean:
        return f"tenant-{digest}"
    if len(clean) > MAX_NAME:
        clean = f"{clean[:55].rstrip('-')}-{digest}"
    return clean
