"""Row limits (REFLEXIO_ROW_LIMIT_*). (stub)"""


class RetentionOperations:
    pass
