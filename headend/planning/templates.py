"""New commune files made from a template in schedules/templates/ (`loaxa init commune`)."""

import re
import unicodedata

from headend.communes.files import CommuneFileError
from headend.core.paths import schedule_templates

TEMPLATE_ID = "xa-mau"  # the commune id (and node id prefix) in the templates
TEMPLATE_NAME = "Xã Mẫu"
MAX_PREFIX = 24  # node ids are at most 40 characters; the template adds up to 10


def slugify(name: str) -> str:
    """'Xã Tân Lang' -> 'xa-tan-lang': no diacritics, đ -> d, lower case, '-' between words."""
    text = name.replace("đ", "d").replace("Đ", "D")
    text = "".join(c for c in unicodedata.normalize("NFD", text)
                   if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def commune_from_template(name: str, template: str = "lang-son") -> tuple[str, str]:
    """(slug, file text) of a new commune file made from a template."""
    slug = slugify(name)
    if not slug:
        raise CommuneFileError(f"commune name {name!r} has no letters or digits to make an id")
    text = (schedule_templates() / f"{template}.toml").read_text(encoding="utf-8")
    prefix = slug[:MAX_PREFIX].rstrip("-")
    text = text.replace(f'id = "{TEMPLATE_ID}"', f'id = "{slug[:64]}"', 1)
    text = text.replace(f'name = "{TEMPLATE_NAME}"', f'name = "{_toml_escape(name)}"', 1)
    return slug, text.replace(f'"{TEMPLATE_ID}-', f'"{prefix}-')


def _toml_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"')
