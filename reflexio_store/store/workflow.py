"""Workflow runs (seed 002's state backend). (stub)"""


class WorkflowOperations:
    pass
