"""Provisioning: communes, villages and nodes in the database, with each node's secrets.

A node's HMAC key lives in the database (the headend signs with it) and, with its broker
password, in the node's config file under <home>/nodes/ (what gets installed on the node).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from headend.communes.files import CommuneSpec
from headend.core.home import Home, write_private
from headend.core.models import Commune, Node, Village


@dataclass(frozen=True)
class NodeSecrets:
    id: str
    village: str
    key: str  # hex HMAC-SHA256 key
    password: str  # broker password


def headend_password(home: Home) -> str:
    """The headend's own broker password, created once per state directory."""
    path = home.secrets_path
    if not path.exists():
        write_private(path, secrets.token_urlsafe(24))
    return path.read_text().strip()


def _node_secrets(home: Home, node_id: str, village: str, key: str) -> NodeSecrets:
    path = home.nodes_dir / f"{node_id}.json"
    if path.exists():
        data = json.loads(path.read_text())
        if data.get("key") == key:
            return NodeSecrets(node_id, village, key, data["password"])
    ns = NodeSecrets(node_id, village, key, secrets.token_urlsafe(18))
    write_private(path, json.dumps({"id": node_id, "village": village, "key": key,
                                    "password": ns.password}, indent=1))
    return ns


class ProvisionError(Exception):
    """A commune file that would take another commune's node, or bring back a revoked one."""


def provision_commune(engine: Engine, home: Home, spec: CommuneSpec) -> list[NodeSecrets]:
    """Create or update the commune's rows; new nodes get a fresh key and broker password.
    Villages are the commune's own (another commune's "thon-1" is another village); a node
    id is one broker login, so a node of another commune is refused, never moved. Revoked
    nodes get no secrets (no broker login)."""
    out: list[NodeSecrets] = []
    with Session(engine) as s, s.begin():
        taken = {n.id: n.commune_id for n in s.scalars(select(Node).where(
            Node.id.in_([n for v in spec.villages for n in v.nodes]),
            Node.commune_id != spec.id))}
        if taken:
            raise ProvisionError("; ".join(
                f"cụm loa '{node}' đã thuộc xã '{commune}' (node {node!r} belongs to commune "
                f"{commune!r}): hãy đặt mã khác" for node, commune in sorted(taken.items())))
        commune = s.get(Commune, spec.id) or Commune(id=spec.id)
        commune.name, commune.province, commune.timezone = spec.name, spec.province, spec.timezone
        commune.terrain = spec.terrain
        s.add(commune)
        s.flush()
        for v in spec.villages:
            village = s.get(Village, (spec.id, v.id)) or Village(commune_id=spec.id, id=v.id)
            village.name = v.name
            s.add(village)
            for node_id in v.nodes:
                node = s.get(Node, node_id)
                if node is None:
                    node = Node(id=node_id, commune_id=spec.id, key=secrets.token_hex(32),
                                seq=0, session=0)
                node.village_id = v.id
                s.add(node)
                if node.revoked_ms is None:
                    out.append(_node_secrets(home, node_id, v.id, node.key))
    return out


def all_node_secrets(engine: Engine, home: Home) -> list[NodeSecrets]:
    """Every node's that may log in to the broker (not revoked)."""
    with Session(engine) as s:
        nodes = s.scalars(select(Node).where(Node.revoked_ms.is_(None)).order_by(Node.id)).all()
        return [_node_secrets(home, n.id, n.village_id, n.key) for n in nodes]


def revoke_node(engine: Engine, home: Home, node_id: str, now_ms: int) -> str:
    """Take a node's broker login and key away at once: its key is replaced by one nobody
    has, its secrets file is deleted, and it is marked revoked (nothing it sends is taken;
    a commune file naming it does not bring it back). Returns its commune's id."""
    with Session(engine) as s, s.begin():
        node = s.get(Node, node_id)
        if node is None:
            raise ProvisionError(f"không có cụm loa '{node_id}' (unknown node)")
        if node.revoked_ms is None:
            node.revoked_ms = now_ms
        node.key = secrets.token_hex(32)  # whatever it signs with no longer checks
        node.online = False
        commune = node.commune_id
    for path in (home.nodes_dir / f"{node_id}.json", home.nodes_dir / f"{node_id}.node.json"):
        path.unlink(missing_ok=True)
    return commune
