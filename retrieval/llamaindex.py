"""pgkb as a LlamaIndex retriever (`pip install pgkb[llamaindex]`): in this process, or over a
served API (`pgkb serve`).

    retriever = PgkbRetriever(collection="handbook", k=4)                        # this process
    retriever = PgkbRetriever(url="http://127.0.0.1:8000", api_key="pgkb_...", collection="handbook")
    for found in retriever.retrieve("how many days of holiday"):
        print(found.score, found.node.metadata["citation"], found.node.text)

Each node's metadata holds the hit's citation, document key, pages, section path, chunk id and
score, over the document's own metadata (retrieval.remote.hit_metadata); a model reading the
node is shown its citation alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.retrievers import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from pgkb.settings import Settings

from .remote import Searcher, hit_metadata
from .search import DEFAULT_MODE, GroupBy, Hit, KnowledgeBase, Mode


class PgkbRetriever(BaseRetriever):
    """The k best chunks of a pgkb collection for a query, as LlamaIndex nodes with scores.

    In this process: `knowledge_base`, or `settings` (by default from the environment, PGKB_*)
    with `collection`; `principals` are the caller's groups (None reads every document). Over
    HTTP: `url` and `api_key`, where the key's groups decide what is read. Other keyword
    arguments go to LlamaIndex's BaseRetriever (callback_manager, verbose...)."""

    def __init__(self, *, collection: str | None = None, k: int = 10, mode: Mode = DEFAULT_MODE,
                 filters: dict[str, Any] | None = None, group_by: GroupBy | None = None,
                 principals: Sequence[str] | None = None, settings: Settings | None = None,
                 knowledge_base: KnowledgeBase | None = None, url: str | None = None, api_key: str | None = None,
                 **options: Any):
        super().__init__(**options)
        self.searcher = Searcher(collection=collection, k=k, mode=mode, filters=filters, group_by=group_by,
                                 principals=principals, settings=settings, knowledge_base=knowledge_base,
                                 url=url, api_key=api_key)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [_found(hit) for hit in self.searcher.search(query_bundle.query_str)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [_found(hit) for hit in await self.searcher.asearch(query_bundle.query_str)]


def _found(hit: Hit) -> NodeWithScore:
    metadata = hit_metadata(hit)
    # What a model or an embedding of the node sees besides its text: the citation.
    hidden = [key for key in metadata if key != "citation"]
    node = TextNode(text=hit.text, id_=str(hit.chunk_id), metadata=metadata,
                    excluded_llm_metadata_keys=hidden, excluded_embed_metadata_keys=hidden)
    return NodeWithScore(node=node, score=hit.score)
