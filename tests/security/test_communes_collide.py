"""Communes cannot collide: two communes made from the same template (both with a "thon-1")
live in one installation, each with its own villages, nodes, emergency targets and alarms; a
commune file that would take another commune's node is refused and changes nothing; an
installation from before keeps its data through the migration."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text
from sqlalchemy.orm import Session

from headend.communes.files import load_commune
from headend.communes.registry import ProvisionError, provision_commune
from headend.core.alarms import NODE_OFFLINE, VILLAGE_SILENT, list_alarms
from headend.core.db import alembic_config, open_db
from headend.core.home import Home
from headend.core.models import AsRunRecord, Node, Village
from headend.nodes.emergency import find_target
from headend.nodes.health import check_nodes
from headend.planning.templates import commune_from_template

HOUR = 3_600_000


def _from_template(tmp_path: Path, name: str) -> Path:
    slug, body = commune_from_template(name)
    path = tmp_path / f"{slug}.toml"
    path.write_text(body, encoding="utf-8")
    return path


@pytest.fixture
def two(tmp_path: Path) -> tuple[Home, Path, Path]:
    home = Home.create(tmp_path / "home")
    return home, _from_template(tmp_path, "Xã Tân Lang"), _from_template(tmp_path, "Xã Hữu Kiên")


def test_two_communes_from_the_template_keep_their_own_villages_and_nodes(
        two: tuple[Home, Path, Path]) -> None:
    home, a_path, b_path = two
    a, b = load_commune(a_path), load_commune(b_path)
    assert {v.id for v in a.villages} == {v.id for v in b.villages}  # both have "thon-1"
    engine = open_db(home.db_url)
    try:
        a_nodes = {s.id for s in provision_commune(engine, home, a)}
        b_nodes = {s.id for s in provision_commune(engine, home, b)}
        assert a_nodes and b_nodes and not a_nodes & b_nodes
        provision_commune(engine, home, a)  # loading A again takes nothing back from B
        with Session(engine) as s:
            for spec, nodes in ((a, a_nodes), (b, b_nodes)):
                villages = s.scalars(select(Village).where(Village.commune_id == spec.id)).all()
                assert {v.id for v in villages} == {v.id for v in spec.villages}
                owned = s.scalars(select(Node).where(Node.commune_id == spec.id)).all()
                assert {n.id for n in owned} == nodes
        # B's emergency button, for all villages or for its own "thon-1", sounds B only.
        assert set(find_target(engine, b.id, None).node_ids) == b_nodes
        thon1_b = set(find_target(engine, b.id, ["thon-1"]).node_ids)
        assert thon1_b and thon1_b <= b_nodes
        assert set(find_target(engine, a.id, ["thon-1"]).node_ids).isdisjoint(thon1_b)
        # Every node of A's thon-1 silent: A's village alarm, and none for B's thon-1.
        with engine.begin() as conn:
            conn.execute(Node.__table__.update().values(online=True, last_seen_ms=HOUR - 1000))
            conn.execute(Node.__table__.update().where(Node.id.in_(
                set(find_target(engine, a.id, ["thon-1"]).node_ids))).values(last_seen_ms=0))
        check_nodes(engine, HOUR)
        offline = {x.subject for x in list_alarms(engine, True) if x.kind == NODE_OFFLINE}
        assert offline == set(find_target(engine, a.id, ["thon-1"]).node_ids)
        silent = [(x.subject, x.commune_id) for x in list_alarms(engine, True)
                  if x.kind == VILLAGE_SILENT]
        assert silent == [("thon-1", a.id)]
        # A's thon-1 back, B's thon-1 down: A's alarm clears, B's is its own.
        with engine.begin() as conn:
            conn.execute(Node.__table__.update().values(last_seen_ms=2 * HOUR - 1000))
            conn.execute(Node.__table__.update().where(Node.id.in_(thon1_b))
                         .values(last_seen_ms=0))
        check_nodes(engine, 2 * HOUR)
        silent = [(x.subject, x.commune_id) for x in list_alarms(engine, True)
                  if x.kind == VILLAGE_SILENT]
        assert silent == [("thon-1", b.id)]
    finally:
        engine.dispose()


def test_a_file_naming_another_communes_node_is_refused_and_changes_nothing(
        two: tuple[Home, Path, Path]) -> None:
    home, a_path, b_path = two
    a = load_commune(a_path)
    engine = open_db(home.db_url)
    try:
        provision_commune(engine, home, a)
        stolen = a.villages[0].nodes[0]
        text_b = b_path.read_text(encoding="utf-8")
        first_b_node = load_commune(b_path).villages[0].nodes[0]
        b_path.write_text(text_b.replace(f'"{first_b_node}"', f'"{stolen}"', 1),
                          encoding="utf-8")
        hostile = load_commune(b_path)
        with pytest.raises(ProvisionError) as refused:
            provision_commune(engine, home, hostile)
        assert stolen in str(refused.value) and a.id in str(refused.value)
        assert "thuộc xã" in str(refused.value)
        with Session(engine) as s:
            node = s.get(Node, stolen)
            assert node is not None and node.commune_id == a.id
            assert s.scalars(select(Village).where(Village.commune_id == hostile.id)).all() == []
        assert set(find_target(engine, a.id, None).node_ids) >= {stolen}
    finally:
        engine.dispose()


def test_an_installation_from_before_keeps_every_row_through_the_migration(
        tmp_path: Path) -> None:
    from alembic import command

    home = Home.create(tmp_path / "old")
    engine = create_engine(home.db_url)
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0006")
        conn.execute(text("INSERT INTO communes (id, name, province, timezone, terrain) "
                          "VALUES ('c1', 'Xã Một', 'Lạng Sơn', 'Asia/Ho_Chi_Minh', 'lowland')"))
        for v in ("thon-1", "thon-2"):
            conn.execute(text("INSERT INTO villages (id, commune_id, name) "
                              "VALUES (:v, 'c1', :n)"), {"v": v, "n": f"Thôn {v}"})
        conn.execute(text("INSERT INTO nodes (id, village_id, key, seq, online, session, fw) "
                          "VALUES ('c1-n1', 'thon-2', 'k1', 7, 1, 3, '0.1.0')"))
        conn.execute(text("INSERT INTO asrun (node_id, rid, trigger, media, title, outcome, "
                          "received_ms, commune_id, chain_seq, hash) VALUES ('c1-n1', 1, "
                          "'command', '', 'Tin', 'aired', 5, 'c1', 1, 'h')"))
    engine.dispose()
    engine = open_db(home.db_url)  # migrates, foreign keys checked after
    try:
        with Session(engine) as s:
            node = s.get(Node, "c1-n1")
            assert node is not None
            assert (node.commune_id, node.village_id, node.key, node.seq, node.session,
                    node.fw, node.revoked_ms) == ("c1", "thon-2", "k1", 7, 3, "0.1.0", None)
            assert s.get(Village, ("c1", "thon-1")) is not None
            assert [r.node_id for r in s.scalars(select(AsRunRecord))] == ["c1-n1"]
        # And a second commune may now have its own "thon-2".
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO communes (id, name, province, timezone, terrain) "
                              "VALUES ('c2', 'Xã Hai', 'Lạng Sơn', 'Asia/Ho_Chi_Minh', 'lowland')"))
            conn.execute(text("INSERT INTO villages (commune_id, id, name) "
                              "VALUES ('c2', 'thon-2', 'Thôn Hai')"))
    finally:
        engine.dispose()
