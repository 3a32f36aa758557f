"""CLI: ``spillwatch console`` (= ``console serve``), ``console user add|list|role|passwd|remove``,
``console token add|list|revoke``.

Passwords are typed at a prompt or read from standard input (``--password-stdin``), never given as
an argument (visible in ``ps`` and shell history). A token is printed once, at creation.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:  # pragma: no cover
    from console.auth import TokenStore, UserStore

ROLES = "viewer, responder or admin"


def register(app: typer.Typer, groups: dict[str, typer.Typer]) -> None:
    console = typer.Typer(no_args_is_help=False, invoke_without_command=True,
                          help="The operator console (web pages + JSON API); without a subcommand: serve.")
    users = typer.Typer(no_args_is_help=True, help="Console users (roles: viewer, responder, admin).")
    tokens = typer.Typer(no_args_is_help=True, help="API tokens for machines (Slack/PagerDuty callbacks, scripts).")
    console.add_typer(users, name="user")
    console.add_typer(tokens, name="token")
    app.add_typer(console, name="console")

    @console.callback()
    def _default(ctx: typer.Context) -> None:
        if ctx.invoked_subcommand is None:
            _serve()

    console.command("serve", help="Serve the console until SIGTERM/SIGINT (console.host:console.port, loopback by default).")(_serve)
    _register_users(users)
    _register_tokens(tokens)


def _serve() -> None:
    from console.service import ConsoleService
    from spillwatch.kafka import wait_for_broker
    from spillwatch.settings import get_settings

    settings = get_settings()
    service = ConsoleService(settings)
    wait_for_broker(settings.kafka.bootstrap, 60)
    typer.echo(f"console on {service.url}", err=True)
    service.run()


def _stores() -> tuple[UserStore, TokenStore]:
    from console.service import make_redis, stores
    from spillwatch.settings import get_settings

    s = get_settings()
    return stores(s, make_redis(s.redis.url))


def _password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


def _fail(exc: Exception) -> None:
    typer.echo(f"spillwatch console: {exc}", err=True)
    raise typer.Exit(2) from exc


def _register_users(users: typer.Typer) -> None:
    @users.command("add", help="Add a user (password at the prompt or from stdin).")
    def user_add(
        name: str = typer.Argument(..., help="lower-case [a-z0-9._-]"),
        role: str = typer.Option("viewer", "--role", help=ROLES),
        password_stdin: bool = typer.Option(False, "--password-stdin", help="read the password from standard input"),
    ) -> None:
        from console.auth import AuthError, Role

        user_store, _ = _stores()
        try:
            user = user_store.add(name, _password(password_stdin), Role(role))
        except (AuthError, ValueError) as exc:
            _fail(exc)
        typer.echo(f"user {user.name} added ({user.role.value})")

    @users.command("list", help="Users and their roles.")
    def user_list() -> None:
        user_store, _ = _stores()
        for u in user_store.list():
            typer.echo(f"{u.name:24s} {u.role.value:10s} {u.created_at[:19]}")

    @users.command("role", help="Change a user's role.")
    def user_role(name: str, role: str = typer.Argument(..., help=ROLES)) -> None:
        from console.auth import AuthError, Role

        user_store, _ = _stores()
        try:
            user_store.set_role(name, Role(role))
        except (AuthError, ValueError) as exc:
            _fail(exc)
        typer.echo(f"{name} is now {role}")

    @users.command("passwd", help="Set a user's password.")
    def user_passwd(name: str, password_stdin: bool = typer.Option(False, "--password-stdin")) -> None:
        from console.auth import AuthError

        user_store, _ = _stores()
        try:
            user_store.set_password(name, _password(password_stdin))
        except AuthError as exc:
            _fail(exc)
        typer.echo(f"password of {name} changed")

    @users.command("remove", help="Remove a user (their sessions end at once).")
    def user_remove(name: str) -> None:
        user_store, _ = _stores()
        if not user_store.remove(name):
            _fail(LookupError(f"no user {name!r}"))
        typer.echo(f"user {name} removed")


def _register_tokens(tokens: typer.Typer) -> None:
    @tokens.command("add", help="Create (or replace) the API token NAME; printed once.")
    def token_add(name: str, role: str = typer.Option("responder", "--role", help=ROLES)) -> None:
        from console.auth import AuthError, Role

        _, token_store = _stores()
        try:
            token = token_store.create(name, Role(role))
        except (AuthError, ValueError) as exc:
            _fail(exc)
        typer.echo(token)

    @tokens.command("list", help="Token names and roles (never the tokens).")
    def token_list() -> None:
        _, token_store = _stores()
        for t in token_store.list():
            typer.echo(f"{t['name']:24s} {t['role']:10s} {t['created_at'][:19]}")

    @tokens.command("revoke", help="Revoke the API token NAME.")
    def token_revoke(name: str) -> None:
        _, token_store = _stores()
        if not token_store.revoke(name):
            _fail(LookupError(f"no token {name!r}"))
        typer.echo(f"token {name} revoked")
