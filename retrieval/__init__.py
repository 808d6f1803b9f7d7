"""Search the knowledge base from Python:

    from retrieval import search
    for hit in search("how do I claim travel expenses", k=5, filters={"source": "policy.pdf"}):
        print(hit.score, hit.citation)
        print(hit.text)
"""

from store.fulltext import QueryError

from .filters import FilterError
from .search import Hit, KnowledgeBase, search

__all__ = ["FilterError", "Hit", "KnowledgeBase", "QueryError", "search"]
