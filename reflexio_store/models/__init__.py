"""Every table reflexio_store keeps, as SQLAlchemy 2 declarative models."""

from reflexio_store.enums import PlaybookReviewStatus, Status
from reflexio_store.models.base import Base
from reflexio_store.models.evaluations import (
    AgentSuccessEvaluationResult,
    PlaybookAggregationChangeLog,
    ProfileChangeLog,
)
from reflexio_store.models.operations import (
    OperationState,
    PlaybookOptimizationCandidate,
    PlaybookOptimizationEvaluation,
    PlaybookOptimizationEvent,
    PlaybookOptimizationJob,
)
from reflexio_store.models.organizations import ApiToken, Organization, ShareLink
from reflexio_store.models.playbooks import AgentPlaybook, AgentPlaybookSource, UserPlaybook
from reflexio_store.models.profiles import Profile
from reflexio_store.models.requests import Interaction, Request
from reflexio_store.models.workflow import WorkflowRun

# An integer key is never handed out twice on SQLite either (AUTOINCREMENT, revision 0007), as
# PostgreSQL's sequences: a reader that remembers the last id it processed never skips a row.
for _table in Base.metadata.tables.values():
    if _table.autoincrement_column is not None:
        _table.dialect_kwargs["sqlite_autoincrement"] = True

__all__ = [
    "AgentPlaybook",
    "AgentPlaybookSource",
    "AgentSuccessEvaluationResult",
    "ApiToken",
    "Base",
    "Interaction",
    "OperationState",
    "Organization",
    "PlaybookAggregationChangeLog",
    "PlaybookOptimizationCandidate",
    "PlaybookOptimizationEvaluation",
    "PlaybookOptimizationEvent",
    "PlaybookOptimizationJob",
    "PlaybookReviewStatus",
    "Profile",
    "ProfileChangeLog",
    "Request",
    "ShareLink",
    "Status",
    "UserPlaybook",
    "WorkflowRun",
]
