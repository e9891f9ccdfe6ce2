"""Named values stored in status columns."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    """Lifecycle of profiles and playbooks. Reflexio itself stores NULL for current."""

    CURRENT = "current"
    PENDING = "pending"
    ARCHIVED = "archived"
    ARCHIVE_IN_PROGRESS = "archive_in_progress"
    MERGED = "merged"
    SUPERSEDED = "superseded"


class PlaybookReviewStatus(StrEnum):
    """Review state of an agent playbook before agents may use it."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
