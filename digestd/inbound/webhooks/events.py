"""Provider-verified bounces and complaints, fed to the same step as mail that comes back:
`inbound.record.record_reading` (evidence, bounce policy and the inbound record in one
transaction).

Each verified event becomes a `Reading` (kind, the recipient with its failure read as mail
bounces are read, held to the provider's hard/soft verdict, and our Message-ID when the
provider reports it) with `Claims(provider=...)`: our Message-ID of a delivery to that
recipient, or a recipient we sent a digest to, is then evidence; anything else is recorded
and changes nothing (`inbound.evidence`).
"""

from __future__ import annotations

from dataclasses import dataclass

from digestd.core.context import AppContext
from digestd.core.failures import Failure, Severity
from digestd.inbound import evidence
from digestd.inbound.parse import one_line
from digestd.inbound.reading import Reading, RecipientReport
from digestd.inbound.record import Received, record_reading
from digestd.subscribers import bounce_policy

MAX_EVENTS = 500  # acted on per request; the rest of a bigger batch is not read


@dataclass(frozen=True)
class ProviderEvent:
    """One bounce or complaint as a provider reports it, read into our terms."""

    kind: str  # "bounce" or "complaint"
    recipient: str
    hard: bool | None = None  # the provider's own verdict on a bounce, when it gives one
    status: str = ""  # enhanced status code (5.1.1), when given
    diagnostic: str = ""  # the remote server's words, or the provider's description
    message_id: str = ""  # our Message-ID (<…>), when the provider reports it
    provider_id: str = ""  # the provider's own id of the message, stored when ours is unknown
    feedback_type: str = ""  # a complaint's type (abuse, …)

    def failure(self) -> Failure:
        """The bounce read as mail bounces are read, then held to the provider's verdict: a
        temporary bounce is never hard, and a permanent one with nothing more specific is
        hard ("a full mailbox, a quota, a greylist or a rate limit is never hard")."""
        read = bounce_policy.read_failure(self.status, self.diagnostic, "failed")
        if self.hard is False and read.severity == Severity.HARD:
            return Failure(Severity.SOFT, read.reason, read.status)
        if self.hard and read.severity == Severity.SOFT and read.reason == "undefined":
            return Failure(Severity.HARD, "userunknown", read.status)
        return read


def bracketed(message_id: str) -> str:
    """A Message-ID as we store it: `<…>` (providers often drop the brackets)."""
    value = one_line(message_id, 250).strip()
    if not value:
        return ""
    return value if value.startswith("<") else f"<{value}>"


def reading_of(event: ProviderEvent) -> Reading:
    """The event as the record and the policy read a returned message."""
    if event.kind == "bounce":
        failure = event.failure()
        report = RecipientReport(
            event.recipient[:320], "failed", failure.status, event.diagnostic, failure
        )
    else:
        report = RecipientReport(event.recipient[:320], "complained")
    return Reading(
        kind=event.kind,
        recipients=[report],
        original_message_id=event.message_id,
        feedback_type=event.feedback_type if event.kind == "complaint" else "",
        detector="webhook",
        message_ids=[event.message_id] if event.message_id else [],
    )


def record_events(ctx: AppContext, provider: str, events: list[ProviderEvent]) -> list[str]:
    """Record and apply each event (one inbound record each); returns what each did."""
    effects = []
    for event in events[:MAX_EVENTS]:
        result = record_reading(
            ctx,
            reading_of(event),
            evidence.Claims(provider=provider),
            received=Received(
                source=f"webhook:{provider}",
                message_id=(event.provider_id or event.message_id)[:255],
                sender=provider,
            ),
        )
        effects.append(result.effect)
    return effects
