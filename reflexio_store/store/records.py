"""Evaluation results, change logs, playbook optimization, share links. (stub)"""


class RecordOperations:
    pass
