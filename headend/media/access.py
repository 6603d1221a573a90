"""Who may fetch a file from /media/<name>.

People: a logged-in user who sees a commune whose bulletin (drafts too, so the approver can
listen first) or emergency broadcast uses the file; the province's admin, every file.

Nodes hold no login, so the headend proves it gave a node a URL in the URL itself: wherever a
media URL goes to a node (its plan's items and fallback, every command through
`Gateway.prepare`), it becomes `<url>?n=<node id>&t=<token>`, the token being the first 32 hex
digits of HMAC-SHA256(the node's key, b"media:" + name). The node's HTTP client sends the
query as it is given (firmware/http.py), so no firmware change is needed. /media checks that
the node is known and still has a key (a revoked node has none) and compares the token in
constant time. Anything else gets the same 404 as a file that does not exist.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from firmware import protocol
from headend.core.auth import ADMIN, Principal
from headend.core.models import Broadcast, Bulletin, Node

# The names /media serves: no directories, no dotfiles (headend/web/app.py serves only these).
MEDIA_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,120}")
TOKEN_HEX: Final = 32
NODE_ID_MAX: Final = 40  # protocol.valid_node_id
# The longest query a node's URL carries: the plan budget (planning/wire.py) counts it.
LONGEST_QUERY: Final = f"?n={'n' * NODE_ID_MAX}&t={'0' * TOKEN_HEX}"
_MEDIA_PATH = re.compile(r"(?:.*/)?media/(" + MEDIA_NAME.pattern + r")")
_NODE_QUERY = re.compile(r"\?n=[a-z0-9_-]{1,40}&t=[0-9a-f]{" + str(TOKEN_HEX) + r"}\Z")


def media_token(node_key_hex: str, name: str) -> str:
    """What proves the headend gave node (of this key) the URL of `name`."""
    mac = hmac.new(protocol.node_key(node_key_hex), b"media:" + name.encode(), hashlib.sha256)
    return mac.hexdigest()[:TOKEN_HEX]


def media_name(url: str) -> str | None:
    """The file name when `url` is a /media/<name> URL without a query yet; else None (a
    relay stream, another host's path with a query: handed on as it is)."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        return None
    m = _MEDIA_PATH.fullmatch(parts.path)
    return m.group(1) if m else None


def node_url(url: str, node_id: str, node_key_hex: str) -> str:
    """`url` as this node gets it: with its token when it is a /media/ URL."""
    name = media_name(url)
    if name is None:
        return url
    return f"{url}?n={node_id}&t={media_token(node_key_hex, name)}"


def node_args(args: Mapping[str, Any], node_id: str, node_key_hex: str) -> dict[str, Any]:
    """A command's args for one node: its media "url" (play, emergency, ota) with the token."""
    out = dict(args)
    url = out.get("url")
    if isinstance(url, str):
        out["url"] = node_url(url, node_id, node_key_hex)
    return out


def without_token(url: str) -> str:
    """The URL a node reports (an as-run record's media) as the headend wrote it, so records
    of one broadcast or file stay alike whatever node sent them."""
    return _NODE_QUERY.sub("", url)


def node_may_fetch(engine: Engine, node_id: str, token: str, name: str) -> bool:
    """Whether `token` is the one the headend gave node `node_id` for `name`."""
    if not protocol.valid_node_id(node_id) or len(token) != TOKEN_HEX:
        return False
    with Session(engine) as s:
        key = s.scalar(select(Node.key).where(Node.id == node_id, Node.revoked_ms.is_(None)))
    if not key:  # unknown, or revoked
        return False
    try:
        expected = media_token(key, name)
    except ValueError:  # a key that is not hex: no token can match it
        return False
    return hmac.compare_digest(expected.encode(), token.encode("utf-8", "replace"))


def user_may_fetch(engine: Engine, me: Principal, name: str) -> bool:
    """Whether a logged-in user may hear `name`: a file of a bulletin or an emergency
    broadcast of a commune they see; the province's admin every file."""
    if me.role == ADMIN and me.province_wide:
        return True
    with Session(engine) as s:
        # Bulletin.media is JSON (profile -> file name): narrowed in SQL, checked exactly here.
        for commune_id, files in s.execute(
                select(Bulletin.commune_id, Bulletin.media)
                .where(Bulletin.media.contains(f'"{name}"', autoescape=True))):
            if me.sees(commune_id) and name in _file_names(files):
                return True
        communes = s.scalars(select(Broadcast.commune_id).where(Broadcast.media == name))
        return any(me.sees(c) for c in communes)


def _file_names(files_json: str | None) -> list[str]:
    try:
        files = json.loads(files_json or "{}")
    except ValueError:
        return []
    return [str(v) for v in files.values()] if isinstance(files, dict) else []
