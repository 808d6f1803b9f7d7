"""pgkb as a LangChain retriever (`pip install pgkb[langchain]`): in this process, or over a
served API (`pgkb serve`).

    retriever = PgkbRetriever(collection="handbook", k=4)                        # this process
    retriever = PgkbRetriever(url="http://127.0.0.1:8000", api_key="pgkb_...", collection="handbook")
    for document in retriever.invoke("how many days of holiday"):
        print(document.metadata["citation"], document.page_content)

Each Document's metadata holds the hit's citation, document key, pages, section path, chunk id
and score, over the document's own metadata (retrieval.remote.hit_metadata).
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, SecretStr

from pgkb.settings import Settings

from .remote import Searcher, hit_metadata
from .search import DEFAULT_MODE, GroupBy, Hit, KnowledgeBase, Mode


class PgkbRetriever(BaseRetriever):
    """The k best chunks of a pgkb collection for a query, as LangChain Documents.

    In this process: `knowledge_base`, or `settings` (by default from the environment, PGKB_*)
    with `collection`; `principals` are the caller's groups (None reads every document). Over
    HTTP: `url` and `api_key`, where the key's groups decide what is read."""

    collection: str | None = None
    k: int = 10
    mode: Mode = DEFAULT_MODE
    filters: dict[str, Any] | None = None
    group_by: GroupBy | None = None
    principals: list[str] | None = None
    settings: Settings | None = None
    knowledge_base: KnowledgeBase | None = None
    url: str | None = None
    api_key: SecretStr | None = None

    # pydantic's errors for a field of the wrong type would otherwise quote what was given.
    model_config = ConfigDict(hide_input_in_errors=True)

    def __init__(self, **fields: Any):
        super().__init__(**fields)
        # A mix of in-process and HTTP fields is refused here, as a ConfigurationError naming
        # them (a validator's error would reach the caller as pydantic's ValidationError).
        self._searcher()

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [_document(hit) for hit in self._searcher().search(query)]

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun) -> list[Document]:
        return [_document(hit) for hit in await self._searcher().asearch(query)]

    def _searcher(self) -> Searcher:
        # Made for each search from the fields as they are now (a field may have been set since).
        return Searcher(collection=self.collection, k=self.k, mode=self.mode, filters=self.filters,
                        group_by=self.group_by, principals=self.principals, settings=self.settings,
                        knowledge_base=self.knowledge_base, url=self.url,
                        api_key=None if self.api_key is None else self.api_key.get_secret_value())


def _document(hit: Hit) -> Document:
    return Document(page_content=hit.text, metadata=hit_metadata(hit), id=str(hit.chunk_id))
