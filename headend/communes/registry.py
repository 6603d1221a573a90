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


def provision_commune(engine: Engine, home: Home, spec: CommuneSpec) -> list[NodeSecrets]:
    """Create or update the commune's rows; new nodes get a fresh key and broker password."""
    out: list[NodeSecrets] = []
    with Session(engine) as s, s.begin():
        commune = s.get(Commune, spec.id) or Commune(id=spec.id)
        commune.name, commune.province, commune.timezone = spec.name, spec.province, spec.timezone
        commune.terrain = spec.terrain
        s.add(commune)
        for v in spec.villages:
            village = s.get(Village, v.id) or Village(id=v.id)
            village.commune_id, village.name = spec.id, v.name
            s.add(village)
            for node_id in v.nodes:
                node = s.get(Node, node_id)
                if node is None:
                    node = Node(id=node_id, key=secrets.token_hex(32), seq=0, session=0)
                node.village_id = v.id
                s.add(node)
                out.append(_node_secrets(home, node_id, v.id, node.key))
    return out


def all_node_secrets(engine: Engine, home: Home) -> list[NodeSecrets]:
    with Session(engine) as s:
        nodes = s.scalars(select(Node).order_by(Node.id)).all()
        return [_node_secrets(home, n.id, n.village_id, n.key) for n in nodes]
