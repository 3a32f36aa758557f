"""SMTP e-mail (smtplib): a plain-text page with the evidence snapshot attached as image/jpeg (a
camera outage: the outage and a link to the camera, no attachment)."""

from __future__ import annotations

import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from alerting.formatting import is_closing, one_line, subject, summary
from alerting.notifiers.base import MAX_ATTACHMENT_BYTES, DeliveryResult, Page
from alerting.notifiers.links import page_links
from spillwatch.events import CameraAlert


def build_message(
    page: Page,
    *,
    sender: str,
    recipients: list[str],
    snapshot_bytes: bytes | None = None,
    public_base_url: str | None = None,
) -> EmailMessage:
    alert = page.alert
    links = page_links(page, public_base_url)
    msg = EmailMessage()
    msg["Subject"] = subject(alert)
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid(domain="spillwatch")
    msg["X-SpillWatch-Idempotency-Key"] = page.idempotency_key
    lines = [summary(alert), "", one_line(alert), ""]
    camera = isinstance(alert, CameraAlert)
    if links.incident_url:
        lines.append(f"{'Camera' if camera else 'Incident'}: {links.incident_url}")
    if not camera and not is_closing(alert):
        lines.append(f"Acknowledge: on the incident page, or spillwatch ack {alert.incident_id} --by NAME")
    if page.snapshot is not None:
        lines.append(f"Evidence snapshot: {page.snapshot.name}" + (" (attached)" if snapshot_bytes else ""))
    msg.set_content("\n".join(lines) + "\n")
    if snapshot_bytes:
        name = page.snapshot.name if page.snapshot else f"{alert.incident_id}.jpg"
        msg.add_attachment(snapshot_bytes, maintype="image", subtype="jpeg", filename=name)
    return msg


def smtp_outcome(exc: BaseException) -> DeliveryResult:
    """SMTP 4xx and connection trouble retry; 5xx replies (bad recipient, auth) are permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        retry = all(400 <= c < 500 for c in codes)
        return (DeliveryResult.retry if retry else DeliveryResult.permanent)(f"recipients refused: {codes}")
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        reason = f"SMTP {exc.smtp_code}: {text[:200]}"
        return (DeliveryResult.retry if 400 <= exc.smtp_code < 500 else DeliveryResult.permanent)(reason, exc.smtp_code)
    if isinstance(exc, (smtplib.SMTPServerDisconnected, smtplib.SMTPConnectError, socket.timeout, OSError)):
        return DeliveryResult.retry(f"connection error: {type(exc).__name__}: {exc}")
    if isinstance(exc, smtplib.SMTPException):
        return DeliveryResult.permanent(f"SMTP error: {type(exc).__name__}: {exc}")
    raise exc


class EmailNotifier:
    def __init__(
        self,
        host: str,
        port: int,
        sender: str,
        recipients: list[str],
        *,
        starttls: bool = False,
        username: str | None = None,
        password: str | None = None,
        timeout_s: float = 10.0,
        public_base_url: str | None = None,
    ) -> None:
        self.name = "email"
        self.host, self.port = host, port
        self.sender, self.recipients = sender, recipients
        self._starttls, self._user, self._password = starttls, username, password
        self._timeout = timeout_s
        self._public = public_base_url

    def send(self, page: Page) -> DeliveryResult:
        data = None
        if page.snapshot is not None:
            try:
                if page.snapshot.stat().st_size <= MAX_ATTACHMENT_BYTES:
                    data = page.snapshot.read_bytes()
            except OSError:
                data = None  # the page goes out without the attachment rather than not at all
        msg = build_message(
            page, sender=self.sender, recipients=self.recipients, snapshot_bytes=data, public_base_url=self._public
        )
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self._timeout) as smtp:
                if self._starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._user:
                    smtp.login(self._user, self._password or "")
                smtp.send_message(msg)
        except Exception as exc:  # noqa: BLE001 - mapped to retry/permanent, unknown errors re-raised
            return smtp_outcome(exc)
        return DeliveryResult.sent(f"mail accepted for {len(self.recipients)} recipient(s)")

    def close(self) -> None:
        return None
