"""Search the knowledge base from Python:

    from retrieval import search
    for hit in search("how do I claim travel expenses", k=5, filters={"source": "policy.pdf"}):
        print(hit.score, hit.citation)
        print(hit.text)

    with KnowledgeBase() as kb:           # one connection and model for many queries
        hits = kb.search("per diem", mode="keyword")
        print(kb.explain("per diem"))     # the SQL statement it runs, with its parameters
"""

from pgkb.errors import QueryError

from .explanation import Explanation
from .filters import FilterError
from .search import GroupBy, Hit, KnowledgeBase, KnowledgeBases, Mode, knowledge_bases, search
from .statement import BM25, Fusion, LegWeights

__all__ = [
    "BM25", "Explanation", "FilterError", "Fusion", "GroupBy", "Hit", "KnowledgeBase", "KnowledgeBases",
    "LegWeights", "Mode", "QueryError", "knowledge_bases", "search",
]
