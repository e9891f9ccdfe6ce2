"""Organizations and API tokens. (stub)"""


class OrganizationOperations:
    pass
