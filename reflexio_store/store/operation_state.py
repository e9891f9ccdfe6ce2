"""Operation state and lease locks. (stub)"""


class OperationStateOperations:
    pass
