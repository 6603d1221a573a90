"""`loaxa user ...`: people who log in to the web app, and API tokens for other systems
(docs/technician.md).
It imports the domain inside its commands, for start-up time (see cli/main.py)."""

from __future__ import annotations

import argparse
import getpass
import sys
import time

from headend.cli.common import (
    open_engine,
    who_and_where,
)
from headend.core.home import Home


def add_user_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    user = sub.add_parser("user", help="web app users and API tokens")
    ops = user.add_subparsers(dest="user_op", required=True, metavar="OPERATION")
    add = ops.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("username")
    add.add_argument("--role", required=True,
                     choices=("admin", "technician", "officer", "approver"),
                     help="admin: the province; technician: --commune ... or --province; "
                          "officer and approver: one --commune")
    add.add_argument("--commune", action="append", default=[], metavar="ID",
                     help="a commune the user belongs to (repeat for a technician)")
    add.add_argument("--province", action="store_true",
                     help="a technician for every commune of the province")
    add.add_argument("--name", default="", help="full name, shown on pages and in the log")
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    ops.add_parser("list", help="list users")
    pw = ops.add_parser("passwd", help="set a user's password (logs out their sessions)")
    pw.add_argument("username")
    pw.add_argument("--password-stdin", action="store_true")
    tok = ops.add_parser("token", help="a new API token for a user (printed once)")
    tok.add_argument("username")
    tok.add_argument("--label", default="", help="what the token is for, e.g. HTTTN")
    tok.add_argument("--scope", action="append", choices=("read", "import"),  # TOKEN_SCOPES
                     help="read (the default) or import (bulletin drafts, e.g. the HTTTN); "
                          "repeat for both. No token can approve.")
    rev = ops.add_parser("revoke", help="revoke a user's API tokens (all, or those of --label)")
    rev.add_argument("username")
    rev.add_argument("--label", default=None)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Mật khẩu / password: ")
    if getpass.getpass("Nhập lại / again: ") != first:
        from headend.core.auth import AuthError

        raise AuthError("Hai lần nhập mật khẩu không khớp (passwords differ).")
    return first


def cmd_user(home: Home, args: argparse.Namespace) -> int:
    from headend.core import audit, auth

    engine = open_engine(home)
    now = time.time_ns() // 1_000_000
    login, where = who_and_where()
    actor = audit.Actor(login, "cli", where)
    try:
        if args.user_op == "add":
            scope = [auth.PROVINCE] if args.province else list(args.commune)
            me = auth.add_user(engine, args.username, _password(args.password_stdin),
                               args.role, scope, now, args.name)
            audit.record(engine, actor, "user_add", now,
                         None if me.province_wide else sorted(me.communes)[0], me.username,
                         f"{me.role}: {', '.join(sorted(me.communes))}")
            print(f"Đã thêm {me.username} ({me.role_vi}; "
                  f"{'cả tỉnh' if me.province_wide else ', '.join(sorted(me.communes))}).")
        elif args.user_op == "list":
            for u in auth.list_users(engine):
                print(f"{u.username:<20} {u.role:<11} {u.communes:<30} "
                      f"{'' if u.active else '(disabled) '}{u.name}")
        elif args.user_op == "passwd":
            auth.set_password(engine, args.username, _password(args.password_stdin))
            print(f"Đã đổi mật khẩu của {args.username}.")
        elif args.user_op == "token":
            scopes = args.scope or [auth.READ]
            token = auth.new_token(engine, args.username, args.label, now, scopes)
            audit.record(engine, actor, "token_add", now, None, args.username,
                         f"{args.label} ({', '.join(sorted(set(scopes)))})")
            print(token)
            print("Giữ mã này cẩn thận: LoaXa không lưu lại nó (shown once).", file=sys.stderr)
        elif args.user_op == "revoke":
            n = auth.revoke_tokens(engine, args.username, args.label)
            audit.record(engine, actor, "token_revoke", now, None, args.username,
                         args.label or "")
            print(f"Đã thu hồi {n} mã truy cập của {args.username}.")
    finally:
        engine.dispose()
    return 0
