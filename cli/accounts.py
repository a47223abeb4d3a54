"""`outage users ...` and `outage keys ...`: who may log in, which systems may call the API.

They work on the access file the service reads (OUTAGE_ACCESS_DB, default
DATA_DIR/access.sqlite3); changes apply to running workers at once. Passwords are read from a
prompt, or from stdin with --password-stdin (for scripts); they never go on the command line.
"""

import argparse
import getpass
import json
import sys
from typing import Any

from access.roles import ROLES, parse_roles
from access.store import AccessError, AccessStore, new_password
from streams.settings import Settings


def add_parsers(commands: Any) -> None:
    users = commands.add_parser("users", help="people who log in, and their roles")
    user_commands = users.add_subparsers(dest="users_command", required=True)
    add = user_commands.add_parser("add", help="add a user (prompts for the password)")
    add.add_argument("name")
    add.add_argument("--roles", required=True, help=f"comma-separated: {', '.join(ROLES)}")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--generate", action="store_true", help="make a random password, print it")
    user_commands.add_parser("list", help="users, roles, disabled or not")
    passwd = user_commands.add_parser("passwd", help="set a new password (ends its sessions)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true")
    passwd.add_argument("--generate", action="store_true")
    roles = user_commands.add_parser("roles", help="replace a user's roles")
    roles.add_argument("name")
    roles.add_argument("roles", help=f"comma-separated: {', '.join(ROLES)}")
    for verb, text in (("disable", "lock out (ends sessions)"), ("enable", "let in again")):
        user_commands.add_parser(verb, help=text).add_argument("name")
    user_commands.add_parser("remove", help="delete a user").add_argument("name")

    keys = commands.add_parser("keys", help="API keys for systems (telephony, CRM, SCADA)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="a new key; its token is printed once")
    create.add_argument("name", help="the system, e.g. crm or scada-north")
    create.add_argument("--roles", required=True, help=f"comma-separated: {', '.join(ROLES)}")
    key_commands.add_parser("list", help="keys, their roles, revoked or not")
    key_commands.add_parser("revoke", help="revoke a key at once").add_argument("key_id")


def _password(args: argparse.Namespace) -> tuple[str, bool]:
    """(password, whether it was generated and must be shown)."""
    if args.generate:
        return new_password(), True
    if args.password_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n"), False
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise AccessError("the two passwords differ")
    return first, False


def run(args: argparse.Namespace, settings: Settings | None = None) -> int:
    settings = settings or Settings()
    store = AccessStore(settings.access_path)
    try:
        if args.command == "users":
            return _users(store, args)
        return _keys(store, args)
    except (AccessError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _users(store: AccessStore, args: argparse.Namespace) -> int:
    match args.users_command:
        case "add":
            roles = parse_roles(args.roles)
            password, generated = _password(args)
            store.add_user(args.name, password, roles)
            print(f"user {args.name} added with roles {', '.join(sorted(roles))}")
            if generated:
                print(f"password: {password}")
        case "list":
            print(json.dumps(store.users(), indent=2))
        case "passwd":
            password, generated = _password(args)
            store.set_password(args.name, password)
            print(f"password of {args.name} changed; its sessions are closed")
            if generated:
                print(f"password: {password}")
        case "roles":
            roles = parse_roles(args.roles)
            store.set_roles(args.name, roles)
            print(f"{args.name} now has {', '.join(sorted(roles))}")
        case "disable" | "enable":
            store.set_disabled(args.name, args.users_command == "disable")
            print(f"{args.name} {args.users_command}d")
        case "remove":
            store.remove_user(args.name)
            print(f"user {args.name} removed")
    return 0


def _keys(store: AccessStore, args: argparse.Namespace) -> int:
    match args.keys_command:
        case "create":
            roles = parse_roles(args.roles)
            key_id, token = store.create_key(args.name, roles)
            print(f"key {key_id} for {args.name} ({', '.join(sorted(roles))}); keep it secret:")
            print(token)
        case "list":
            print(json.dumps(store.keys(), indent=2))
        case "revoke":
            store.revoke_key(args.key_id)
            print(f"key {args.key_id} revoked")
    return 0
