"""Profiles, user playbooks, agent playbooks and their lifecycle. (stub)"""


class MemoryOperations:
    pass
