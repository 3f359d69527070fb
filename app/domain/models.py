"""Every ORM model, imported so ``Base.metadata`` is complete (Alembic, tests)."""

from app.domain.aliases.models import ModelAlias
from app.domain.api_keys.models import ApiKey
from app.domain.audit.models import AuditEvent
from app.domain.bundles.models import CodeBundle
from app.domain.deployments.models import Deployment
from app.domain.evaluations.models import Evaluation
from app.domain.events.models import Event
from app.domain.idempotency.models import IdempotencyRecord
from app.domain.leases.models import Lease
from app.domain.metrics.models import MetricPoint
from app.domain.model_versions.models import ModelVersion
from app.domain.optimizer.models import OptimizerDecision
from app.domain.outbox.models import OutboxMessage
from app.domain.polling.models import PollCursor
from app.domain.projects.models import Membership, Project
from app.domain.runs.models import TrainingRun
from app.domain.ui_sessions.models import UiSession
from app.domain.webhooks.models import Webhook, WebhookDelivery

__all__ = [
    "ApiKey",
    "AuditEvent",
    "CodeBundle",
    "Deployment",
    "Event",
    "Evaluation",
    "IdempotencyRecord",
    "Lease",
    "Membership",
    "MetricPoint",
    "ModelAlias",
    "ModelVersion",
    "OptimizerDecision",
    "OutboxMessage",
    "PollCursor",
    "Project",
    "TrainingRun",
    "UiSession",
    "Webhook",
    "WebhookDelivery",
]
