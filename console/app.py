"""The console's ASGI app (FastAPI): wiring, authentication, and the JSON API.

Authentication, for every route but ``/login``, ``/healthz`` and ``/static``:

* a sign-in session: cookie ``spillwatch_session`` (HttpOnly, SameSite=Lax so links from Slack or
  e-mail open the incident page signed in, Secure unless ``console.cookie_secure`` is off), and for
  every state-changing request the session's CSRF token (form field ``csrf_token`` or header
  ``X-CSRF-Token``), on top of the origin check of console/security.py;
* or an API token: ``Authorization: Bearer swc_...`` (``spillwatch console token add``).

Roles: viewer reads; responder also acknowledges, labels and removes suppressions; admin also
manages users and may force a suppression above the area cap.
The API (``/api/...``) is described by the framework's OpenAPI document at ``/api/openapi.json``
(signed-in users and tokens; no CDN-served viewer is bundled).
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from console.auth import (
    LoginThrottle,
    Principal,
    Role,
    SessionStore,
    TokenStore,
    UserStore,
)
from console.data import STATUSES, ConsoleData, Filters, NotFound
from console.feeds import ConsoleFeeds
from console.live import EventBus
from console.models import (
    AckBody,
    AckView,
    CameraView,
    IncidentDetail,
    IncidentPage,
    LabelBody,
    Me,
    OutageView,
    SuppressBody,
    SuppressionView,
    VerdictView,
)
from console.security import GuardMiddleware
from spillwatch.logs import get_logger
from spillwatch.settings import Settings
from spillwatch.suppression import Outcome

log = get_logger("console.app")

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "spillwatch_session"
LOGIN_COOKIE = "spillwatch_login"
STREAM_MAX_S = 600.0


@dataclass
class Console:
    """Everything a request needs (one per app)."""

    settings: Settings
    redis: Any
    users: UserStore
    sessions: SessionStore
    tokens: TokenStore
    throttle: LoginThrottle
    data: ConsoleData
    bus: EventBus
    feeds: ConsoleFeeds | None = None


class LoginRequired(Exception):
    """A page needs a signed-in user: redirect to /login."""


def ctx(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


def principal_of(request: Request) -> Principal | None:
    c = ctx(request)
    auth = request.headers.get("authorization")
    if auth is not None:
        scheme, _, cred = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        found = c.tokens.get(cred.strip())
        return Principal(found[0], found[1], "token") if found else None
    sid = request.cookies.get(SESSION_COOKIE)
    if not sid:
        return None
    sess = c.sessions.get(sid)
    if sess is None:
        return None
    user = c.users.get(sess[0])
    if user is None:
        return None
    return Principal(user.name, user.role, "session", csrf=sess[1], session_digest=sess[2])


def csrf_ok(p: Principal, supplied: str | None) -> bool:
    return p.kind == "token" or bool(p.csrf and supplied and hmac.compare_digest(p.csrf, supplied))


def api_user(request: Request) -> Principal:
    p = principal_of(request)
    if p is None:
        raise HTTPException(401, "sign in or send Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
    return p


def api_role(role: Role) -> Callable[[Request], Principal]:
    """A state-changing API call: ``role`` or more, CSRF header for cookie sessions, JSON bodies only."""

    def dep(request: Request) -> Principal:
        p = api_user(request)
        if not p.allows(role):
            raise HTTPException(403, f"needs role {role.value} (you are {p.role.value})")
        if not csrf_ok(p, request.headers.get("x-csrf-token")):
            raise HTTPException(403, "CSRF token missing or wrong (header X-CSRF-Token)")
        ctype = request.headers.get("content-type", "")
        if request.headers.get("content-length", "0") not in ("", "0") and ctype.split(";")[0].strip().lower() != "application/json":
            raise HTTPException(415, "send JSON (Content-Type: application/json)")
        return p

    return dep


Reader = Annotated[Principal, Depends(api_user)]
Responder = Annotated[Principal, Depends(api_role(Role.RESPONDER))]

api = APIRouter(prefix="/api", tags=["api"])


@api.get("/me", response_model=Me, summary="Who am I (name, role, session or token)")
def me(p: Reader) -> Me:
    return Me(name=p.name, role=p.role.value, kind=p.kind)


@api.get("/cameras", response_model=list[CameraView], summary="Every camera: state, fps, spill probability, open incident")
def cameras(request: Request, _: Reader) -> list[CameraView]:
    return ctx(request).data.cameras()


@api.get("/outages", response_model=list[OutageView], summary="Camera outages: open first, then recovered; with their pages")
def outages(request: Request, _: Reader, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[OutageView]:
    return ctx(request).data.outages(limit)


def parse_time(value: str | None, name: str, *, end_of_day: bool = False) -> datetime | None:
    """ISO-8601 date or date-time (UTC when no zone); a bare date as ``until`` means its whole day."""
    if not value:
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(400, f"{name}: not an ISO-8601 date/time") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    if end_of_day and len(value) == 10:
        t += timedelta(days=1) - timedelta(microseconds=1)
    return t


def filters_of(camera: str | None, status: str | None, since: str | None, until: str | None) -> Filters:
    if status and status not in STATUSES:
        raise HTTPException(400, f"status: one of {', '.join(STATUSES)}")
    return Filters(camera=camera or None, status=status or None, since=parse_time(since, "since"), until=parse_time(until, "until", end_of_day=True))


@api.get("/incidents", response_model=IncidentPage, summary="Incidents: open first, then history; filtered, paged")
def incidents(
    request: Request,
    _: Reader,
    camera: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[str | None, Query(description="open, acknowledged, unacknowledged, cleared")] = None,
    since: Annotated[str | None, Query(description="confirmed at or after (ISO-8601)")] = None,
    until: Annotated[str | None, Query(description="confirmed at or before (ISO-8601)")] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=200)] = 25,
) -> IncidentPage:
    return ctx(request).data.incidents(filters_of(camera, status, since, until), page, per_page)


@api.get("/incidents/{incident_id}", response_model=IncidentDetail, summary="One incident with evidence, timeline and pages")
def incident(request: Request, incident_id: str, _: Reader) -> IncidentDetail:
    try:
        return ctx(request).data.incident(incident_id)
    except NotFound:
        raise HTTPException(404, "unknown incident") from None


@api.get("/incidents/{incident_id}/snapshot", response_class=FileResponse, summary="The evidence JPEG (signed-in users and tokens only)")
def snapshot(request: Request, incident_id: str, _: Reader) -> Response:
    path = ctx(request).data.snapshot_path(incident_id)
    if path is None:
        raise HTTPException(404, "no snapshot")
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"})


@api.post("/incidents/{incident_id}/ack", response_model=AckView, summary="Acknowledge (stops escalation); by = the caller")
def ack(request: Request, incident_id: str, p: Responder, body: AckBody | None = None) -> AckView:
    c = ctx(request)
    try:
        a = c.data.acknowledge(incident_id, p, (body or AckBody()).note)
    except NotFound:
        raise HTTPException(404, "unknown incident") from None
    if c.feeds is not None:
        c.feeds.note_acked(incident_id)
    log.info("incident acknowledged", incident=incident_id, by=a.by, via=p.kind)
    return AckView(by=a.by, at=a.at, note=a.note)


@api.post("/incidents/{incident_id}/label", response_model=VerdictView, summary="Verdict spill / clean (false alarm) into the archive")
def label(request: Request, incident_id: str, body: LabelBody, p: Responder) -> VerdictView:
    c = ctx(request)
    try:
        v = c.data.label(incident_id, body.label, p, body.note)
    except NotFound:
        raise HTTPException(404, "unknown incident") from None
    announce_label(c, incident_id)
    log.info("incident labelled", incident=incident_id, label=v.label, by=v.by, via=p.kind,
             suppression=v.suppression.status if v.suppression else None)
    return v


@api.post("/incidents/{incident_id}/suppress", response_model=Outcome,
          summary="Learn a suppression from this false alarm again (force above the area cap: admins)")
def suppress(request: Request, incident_id: str, p: Responder, body: SuppressBody | None = None) -> Outcome:
    return request_suppression(ctx(request), incident_id, p, (body or SuppressBody()).force, via=p.kind)


def request_suppression(c: Console, incident_id: str, p: Principal, force: bool, *, via: str) -> Outcome:
    """Learn from a false alarm on request (API and page): ``force`` above the area cap is an admin's."""
    if force and not p.allows(Role.ADMIN):
        raise HTTPException(403, "forcing a suppression above the area cap needs role admin")
    try:
        outcome = c.data.suppress(incident_id, p, force=force)
    except NotFound:
        raise HTTPException(404, "unknown incident") from None
    announce_label(c, incident_id)
    log.info("suppression requested", incident=incident_id, status=outcome.status, entry=outcome.entry_id, force=force,
             by=p.name, via=via)
    return outcome


@api.get("/suppressions", response_model=list[SuppressionView], summary="Learned false alarms, per camera (with expired ones)")
def suppressions(request: Request, _: Reader, camera: Annotated[str | None, Query(max_length=128)] = None) -> list[SuppressionView]:
    return ctx(request).data.suppression_list(camera or None)


@api.post("/suppressions/{entry_id}/remove", response_model=SuppressionView, summary="Remove a suppression (its camera pages there again)")
def remove_suppression(request: Request, entry_id: str, p: Responder) -> SuppressionView:
    try:
        gone = ctx(request).data.remove_suppression(entry_id)
    except NotFound:
        raise HTTPException(404, "unknown suppression") from None
    log.info("suppression removed", entry=entry_id, camera=gone.camera_id, incident=gone.incident_id, by=p.name, via=p.kind)
    return gone


def announce_label(c: Console, incident_id: str) -> None:
    rec = c.data.index.get(incident_id)
    cam = rec.camera_id if rec else None
    c.bus.publish({"type": "incident", "incident_id": incident_id, "camera_id": cam, "change": "labelled"})
    if c.feeds is not None:
        c.feeds.note_acked(incident_id, cam)


@api.get("/events", summary="Server-sent events: incident and camera changes", response_class=StreamingResponse)
def events(request: Request, _: Reader) -> StreamingResponse:
    return StreamingResponse(ctx(request).bus.stream(STREAM_MAX_S), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


@api.get("/openapi.json", include_in_schema=False)
def openapi(request: Request, _: Reader) -> JSONResponse:
    return JSONResponse(request.app.openapi())


def allowed_hosts(settings: Settings) -> list[str]:
    """Host header names answered: the configured ones + the host of the public URL."""
    hosts = list(settings.console.allowed_hosts)
    if settings.alerting.public_base_url:
        name = urlsplit(settings.alerting.public_base_url).hostname
        if name:
            hosts.append(name)
    return hosts


def create_app(console: Console) -> FastAPI:
    from console import pages

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import asyncio

        console.bus.bind(asyncio.get_running_loop())
        yield
        console.bus.close_all()

    app = FastAPI(
        title="SpillWatch console API",
        version="1",
        description="Incidents and cameras of SpillWatch. Authenticate with a session (browser) or `Authorization: Bearer <token>`.",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    app.state.console = console
    app.state.templates = Jinja2Templates(directory=str(HERE / "templates"))
    pages.install_filters(app.state.templates)
    app.include_router(api)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        from urllib.parse import quote

        from fastapi.responses import RedirectResponse

        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        """JSON for the API and scripts; a small page for a browser."""
        wants_html = "text/html" in request.headers.get("accept", "") and not request.url.path.startswith("/api/")
        if not wants_html:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        t = request.app.state.templates
        return t.TemplateResponse(request, "error.html", {"user": None, "csrf": None, "status": exc.status_code, "detail": exc.detail},
                                  status_code=exc.status_code, headers=exc.headers)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> JSONResponse:
        ok_redis = True
        try:
            console.redis.ping()
        except Exception:  # noqa: BLE001
            ok_redis = False
        feeds = console.feeds
        alive = feeds is not None and feeds.alive()
        ready = feeds is not None and feeds.alerts_ready.is_set()
        status = "ok" if ok_redis and alive else "degraded"
        body = {"status": status, "redis": ok_redis, "feeds_alive": alive, "incidents_loaded": ready}
        return JSONResponse(body, status_code=200 if status == "ok" else 503)

    cfg = console.settings.console
    app.add_middleware(GuardMiddleware, max_body=cfg.max_body_bytes, timeout_s=cfg.request_timeout_s,
                       public_url=console.settings.alerting.public_base_url)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts(console.settings))
    return app
