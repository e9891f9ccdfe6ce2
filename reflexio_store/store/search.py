"""Text, vector and hybrid search. (stub)"""


class SearchOperations:
    pass
