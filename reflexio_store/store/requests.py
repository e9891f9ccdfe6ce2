"""Requests and their interactions. (Owned by the requests/memories work; stub.)"""


class RequestOperations:
    pass
