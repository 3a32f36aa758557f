"""The console's pages: server-rendered (Jinja2), working without JavaScript; console/static/console.js
adds live updates (server-sent events -> re-fetch the changed part: ``/cameras/_grid``,
``/incidents/_rows``, ``/incidents/{id}/_panel``).

Forms post with the session's CSRF token (hidden field ``csrf_token``) and answer with a redirect.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from console.app import (
    LOGIN_COOKIE,
    SESSION_COOKIE,
    LoginRequired,
    announce_label,
    csrf_ok,
    ctx,
    filters_of,
    principal_of,
    request_suppression,
)
from console.auth import AuthError, Principal, Role
from console.data import STATUSES, NotFound
from console.render import overlay, score_chart
from spillwatch.logs import get_logger

log = get_logger("console.pages")

router = APIRouter(include_in_schema=False)


def install_filters(templates: Any) -> None:
    env = templates.env

    def ts(value: datetime | None) -> str:
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if value else "-"

    def hms(value: datetime | None) -> str:
        return value.astimezone(UTC).strftime("%H:%M:%S") if value else "-"

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{value * 100:.0f}%"

    env.filters.update(ts=ts, hms=hms, pct=pct)


def page_user(request: Request) -> Principal:
    p = principal_of(request)
    if p is None or p.kind != "session":
        raise LoginRequired()
    return p


def form_user(role: Role) -> Any:
    """A form post: signed in, ``role`` or more, the session's CSRF token in the form."""

    def dep(request: Request, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Principal:
        p = principal_of(request)
        if p is None or p.kind != "session":
            raise HTTPException(401, "sign in first")
        if not csrf_ok(p, csrf_token):
            raise HTTPException(403, "CSRF token missing or wrong")
        if not p.allows(role):
            raise HTTPException(403, f"needs role {role.value} (you are {p.role.value})")
        return p

    return dep


Viewer = Annotated[Principal, Depends(page_user)]
FormResponder = Annotated[Principal, Depends(form_user(Role.RESPONDER))]
FormAdmin = Annotated[Principal, Depends(form_user(Role.ADMIN))]
FormUser = Annotated[Principal, Depends(form_user(Role.VIEWER))]


def render(request: Request, name: str, p: Principal | None, status: int = 200, **context: Any) -> HTMLResponse:
    t = request.app.state.templates
    return t.TemplateResponse(request, name, {"user": p, "csrf": p.csrf if p else None, "Role": Role, **context}, status_code=status)


def safe_next(target: str | None) -> str:
    """Only a path of this site (no scheme, no //host): an open redirect would help phishing."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/cameras"
    return target


# ------------------------------------------------------------------ sign-in


@router.get("/", response_class=RedirectResponse)
def home() -> RedirectResponse:
    return RedirectResponse("/cameras", status_code=303)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/cameras") -> HTMLResponse:
    token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
    resp = render(request, "login.html", None, next=safe_next(next), login_csrf=token, error=None)
    _login_cookie(request, resp, token)
    return resp


def _login_cookie(request: Request, resp: Response, token: str) -> None:
    resp.set_cookie(LOGIN_COOKIE, token, max_age=3600, httponly=True, samesite="strict",
                    secure=ctx(request).settings.console.cookie_secure, path="/login")


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    csrf_token: Annotated[str, Form(max_length=200)] = "",
    next: Annotated[str, Form(max_length=2000)] = "/cameras",
) -> Response:
    c = ctx(request)
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    name = username.strip().lower()
    if not cookie or not hmac.compare_digest(cookie, csrf_token):
        return _login_failed(request, next, "The sign-in form expired; please try again.", 403)
    if c.throttle.locked(name):
        log.warning("sign-in refused: locked", user=name)
        return _login_failed(request, next, "Too many failed sign-ins; try again later.", 429)
    user = c.users.verify(name, password)
    if user is None:
        c.throttle.failed(name)
        log.warning("sign-in failed", user=name[:64])
        return _login_failed(request, next, "Wrong user name or password.", 401)
    c.throttle.succeeded(name)
    sid, _ = c.sessions.create(user.name)
    resp = RedirectResponse(safe_next(next), status_code=303)
    resp.set_cookie(SESSION_COOKIE, sid, max_age=c.settings.console.session_ttl_s, httponly=True, samesite="lax",
                    secure=c.settings.console.cookie_secure, path="/")
    resp.delete_cookie(LOGIN_COOKIE, path="/login")
    log.info("signed in", user=user.name, role=user.role.value)
    return resp


def _login_failed(request: Request, target: str, error: str, status: int) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    resp = render(request, "login.html", None, status=status, next=safe_next(target), login_csrf=token, error=error)
    _login_cookie(request, resp, token)
    return resp


@router.post("/logout")
def logout(request: Request, p: FormUser) -> RedirectResponse:
    if p.session_digest:
        ctx(request).sessions.delete_digest(p.session_digest)
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    log.info("signed out", user=p.name)
    return resp


# ------------------------------------------------------------------ cameras


@router.get("/cameras", response_class=HTMLResponse)
def cameras_page(request: Request, p: Viewer) -> HTMLResponse:
    data = ctx(request).data
    return render(request, "cameras.html", p, cameras=data.cameras(), outages=data.outages(20), live="cameras")


@router.get("/cameras/_grid", response_class=HTMLResponse)
def cameras_grid(request: Request, p: Viewer) -> HTMLResponse:
    data = ctx(request).data
    return render(request, "_camera_grid.html", p, cameras=data.cameras(), outages=data.outages(20))


@router.get("/cameras/{camera_id}/thumbnail")
def thumbnail(request: Request, camera_id: str, p: Viewer) -> Response:
    found = ctx(request).data.board.thumbnail(camera_id)
    if found is None:
        raise HTTPException(404, "no thumbnail yet")
    return Response(found[0], media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


# ------------------------------------------------------------------ incidents


def _list_context(request: Request, camera: str, status: str, since: str, until: str, page: int) -> dict[str, Any]:
    c = ctx(request)
    f = filters_of(camera, status, since, until)
    result = c.data.incidents(f, max(1, min(page, 10_000)), 25)
    return {
        "result": result,
        "filters": {"camera": camera, "status": status, "since": since, "until": until},
        "statuses": STATUSES,
        "camera_ids": sorted({cam.camera_id for cam in c.data.cameras()}),
    }


@router.get("/incidents", response_class=HTMLResponse)
def incidents_page(request: Request, p: Viewer, camera: str = "", status: str = "", since: str = "", until: str = "",
                   page: int = 1) -> HTMLResponse:
    return render(request, "incidents.html", p, live="incidents", **_list_context(request, camera, status, since, until, page))


@router.get("/incidents/_rows", response_class=HTMLResponse)
def incidents_rows(request: Request, p: Viewer, camera: str = "", status: str = "", since: str = "", until: str = "",
                   page: int = 1) -> HTMLResponse:
    return render(request, "_incident_rows.html", p, **_list_context(request, camera, status, since, until, page))


def _detail(request: Request, incident_id: str) -> dict[str, Any]:
    try:
        inc = ctx(request).data.incident(incident_id)
    except NotFound:
        raise HTTPException(404, "unknown incident") from None
    return {"inc": inc, "chart": score_chart(inc), "overlay": overlay(inc)}


@router.get("/incidents/{incident_id}", response_class=HTMLResponse)
def incident_page(request: Request, incident_id: str, p: Viewer) -> HTMLResponse:
    return render(request, "incident.html", p, live="incident", **_detail(request, incident_id))


@router.get("/incidents/{incident_id}/_panel", response_class=HTMLResponse)
def incident_panel(request: Request, incident_id: str, p: Viewer) -> HTMLResponse:
    return render(request, "_incident_panel.html", p, **_detail(request, incident_id))


@router.get("/incidents/{incident_id}/snapshot")
def incident_snapshot(request: Request, incident_id: str, p: Viewer) -> Response:
    path = ctx(request).data.snapshot_path(incident_id)
    if path is None:
        raise HTTPException(404, "no snapshot")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@router.post("/incidents/{incident_id}/ack")
def ack_form(request: Request, incident_id: str, p: FormResponder, note: Annotated[str, Form(max_length=2000)] = "") -> Response:
    c = ctx(request)
    try:
        c.data.acknowledge(incident_id, p, note)
    except NotFound:
        raise HTTPException(404, "unknown incident") from None
    if c.feeds is not None:
        c.feeds.note_acked(incident_id)
    log.info("incident acknowledged", incident=incident_id, by=p.name, via="page")
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/label")
def label_form(request: Request, incident_id: str, p: FormResponder, label: Annotated[str, Form(pattern="^(spill|clean)$")]) -> Response:
    c = ctx(request)
    try:
        c.data.label(incident_id, label, p)
    except NotFound:
        raise HTTPException(404, "unknown incident") from None
    announce_label(c, incident_id)
    log.info("incident labelled", incident=incident_id, label=label, by=p.name, via="page")
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


@router.post("/incidents/{incident_id}/suppress")
def suppress_form(request: Request, incident_id: str, p: FormResponder, force: Annotated[str, Form(max_length=5)] = "") -> Response:
    request_suppression(ctx(request), incident_id, p, force in ("1", "true", "on"), via="page")
    return RedirectResponse(f"/incidents/{incident_id}", status_code=303)


# ------------------------------------------------------------------ suppressions


@router.get("/suppressions", response_class=HTMLResponse)
def suppressions_page(request: Request, p: Viewer, camera: str = "", error: str = "", done: str = "") -> HTMLResponse:
    c = ctx(request)
    items = c.data.suppression_list(camera or None)
    cams = sorted({cam.camera_id for cam in c.data.cameras()} | {s.camera_id for s in c.data.suppression_list()})
    return render(request, "suppressions.html", p, page="suppressions", items=items, camera=camera, camera_ids=cams,
                  error=error[:200], done=done[:200])


@router.post("/suppressions/{entry_id}/remove")
def remove_suppression_form(request: Request, entry_id: str, p: FormResponder) -> Response:
    from urllib.parse import urlencode

    try:
        gone = ctx(request).data.remove_suppression(entry_id)
    except NotFound:
        return RedirectResponse("/suppressions?" + urlencode({"error": f"no suppression {entry_id[:80]}"}), status_code=303)
    log.info("suppression removed", entry=entry_id, camera=gone.camera_id, incident=gone.incident_id, by=p.name, via="page")
    return RedirectResponse("/suppressions?" + urlencode({"done": f"suppression {entry_id} of {gone.camera_id} removed"}), status_code=303)


# ------------------------------------------------------------------ users (admin)


@router.get("/users", response_class=HTMLResponse)
def users_page(request: Request, p: Viewer, error: str = "", done: str = "") -> HTMLResponse:
    if not p.allows(Role.ADMIN):
        raise HTTPException(403, "needs role admin")
    c = ctx(request)
    return render(request, "users.html", p, users=c.users.list(), tokens=c.tokens.list(), roles=list(Role),
                  error=error[:200], done=done[:200])


@router.post("/users")
def add_user(request: Request, p: FormAdmin, name: Annotated[str, Form(max_length=64)], role: Annotated[Role, Form()],
             password: Annotated[str, Form(max_length=1024)]) -> Response:
    try:
        ctx(request).users.add(name.strip().lower(), password, role)
    except AuthError as exc:
        return _users_redirect(error=str(exc))
    log.info("user added", user=name, role=role.value, by=p.name)
    return _users_redirect(done=f"user {name} added")


@router.post("/users/{name}/role")
def set_role(request: Request, name: str, p: FormAdmin, role: Annotated[Role, Form()]) -> Response:
    if name == p.name and role != Role.ADMIN:
        return _users_redirect(error="you cannot take your own admin role")
    try:
        ctx(request).users.set_role(name, role)
    except AuthError as exc:
        return _users_redirect(error=str(exc))
    log.info("user role changed", user=name, role=role.value, by=p.name)
    return _users_redirect(done=f"{name} is now {role.value}")


@router.post("/users/{name}/delete")
def delete_user(request: Request, name: str, p: FormAdmin) -> Response:
    if name == p.name:
        return _users_redirect(error="you cannot remove yourself")
    ctx(request).users.remove(name)
    log.info("user removed", user=name, by=p.name)
    return _users_redirect(done=f"user {name} removed")


@router.post("/tokens/{name}/revoke")
def revoke_token(request: Request, name: str, p: FormAdmin) -> Response:
    ctx(request).tokens.revoke(name)
    log.info("token revoked", token=name, by=p.name)
    return _users_redirect(done=f"token {name} revoked")


def _users_redirect(error: str = "", done: str = "") -> RedirectResponse:
    from urllib.parse import urlencode

    q = urlencode({k: v for k, v in (("error", error), ("done", done)) if v})
    return RedirectResponse("/users" + (f"?{q}" if q else ""), status_code=303)

