"""The ``rag`` backend: a BM25 index over a folder of documents, shared by every caller."""

from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from backends.base import Backend, tool
from contract.extras import require

CORPUS_ENV = "DURABLE_SESSIONS_RAG_CORPUS"
DEFAULT_CORPUS = Path(__file__).with_name("rag_corpus")
SUFFIXES = (".md", ".txt")
#: ``rag:stats``' backend_version (AgentFlow's field).
BACKEND_VERSION = "1.0.0"
#: Paragraphs are merged into chunks of about this many characters.
CHUNK_CHARS = 1200


@dataclass(frozen=True)
class Chunk:
    doc_id: str
    source: str
    content: str


def load_chunks(root: Path) -> list[Chunk]:
    """Every text and markdown file under ``root``, split into paragraph-aligned chunks."""
    if not root.is_dir():
        raise FileNotFoundError(f"rag corpus {str(root)!r} is not a directory (set {CORPUS_ENV})")
    chunks: list[Chunk] = []
    for path in sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES and p.is_file()):
        source = path.relative_to(root).as_posix()
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", path.read_text(errors="replace"))]
        current = ""
        parts: list[str] = []
        for paragraph in filter(None, paragraphs):
            if current and len(current) + len(paragraph) > CHUNK_CHARS:
                parts.append(current)
                current = ""
            current = f"{current}\n\n{paragraph}" if current else paragraph
        if current:
            parts.append(current)
        chunks += [Chunk(f"{source}#{i}", source, text) for i, text in enumerate(parts)]
    if not chunks:
        raise ValueError(f"rag corpus {str(root)!r} has no {' or '.join(SUFFIXES)} files")
    return chunks


class RagBackend(Backend):
    """BM25 (the ``bm25s`` library) over ``$DURABLE_SESSIONS_RAG_CORPUS`` (default: a small
    built-in corpus about this product); indexed once per worker process."""

    name = "rag"
    shared = True

    def __init__(self) -> None:
        self._chunks: list[Chunk] = []
        self._index: Any = None

    async def warmup(self) -> None:
        root = Path(os.environ.get(CORPUS_ENV) or DEFAULT_CORPUS)
        # Indexing is CPU work: keep the worker's event loop (and its heartbeats) free.
        self._chunks, self._index = await asyncio.to_thread(_build, root)

    async def shutdown(self) -> None:
        self._chunks, self._index = [], None

    @tool("rag:search", idempotent=True)
    async def search(
        self,
        query: Annotated[str, Field(min_length=1, max_length=10_000)],
        top_k: Annotated[int, Field(ge=1, le=50)] | None = 5,
    ) -> dict[str, Any]:
        """Rank the corpus for ``query`` (``top_k`` null: 5); returns results (doc_id, source,
        score, content), best first, and corpus_size (chunks indexed); and AgentFlow's query
        and context (the results' texts, each ``[source]`` then its content, between lines
        ``---``)."""
        bm25s = require("bm25s", "the rag backend")
        tokens = bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not any(tokens.ids[0]):
            return _answer(query, [], len(self._chunks))
        k = min(top_k or 5, len(self._chunks))
        ids, scores = self._index.retrieve(tokens, k=k, show_progress=False)
        results = [
            {
                "doc_id": self._chunks[i].doc_id,
                "source": self._chunks[i].source,
                "score": round(float(score), 4),
                "content": self._chunks[i].content,
            }
            for i, score in zip(ids[0], scores[0], strict=True)
            if score > 0
        ]
        return _answer(query, results, len(self._chunks))

    @tool("rag:batch_search", idempotent=True)
    async def batch_search(
        self,
        queries: Annotated[
            list[Annotated[str, Field(min_length=1, max_length=10_000)]],
            Field(min_length=1, max_length=50),
        ],
        top_k: Annotated[int, Field(ge=1, le=50)] | None = 5,
    ) -> dict[str, Any]:
        """AgentFlow's batch: each query searched as ``rag:search`` does (1..50 queries);
        returns AgentFlow's count and contexts (one context per query, in order) and our
        results (one rag:search answer per query)."""
        answers = [await self.search(query, top_k) for query in queries]
        return {
            "count": len(queries),
            "contexts": [a["context"] for a in answers],
            "results": answers,
        }

    @tool("rag:stats", idempotent=True)
    async def stats(self) -> dict[str, Any]:
        """AgentFlow's stats: initialized, backend_version and index (ours: the corpus folder,
        documents and chunks indexed)."""
        sources = {c.source for c in self._chunks}
        return {
            "initialized": self._index is not None,
            "backend_version": BACKEND_VERSION,
            "index": {
                "kind": "bm25",
                "corpus": str(Path(os.environ.get(CORPUS_ENV) or DEFAULT_CORPUS)),
                "documents": len(sources),
                "chunks": len(self._chunks),
            },
        }


def _answer(query: str, results: list[dict[str, Any]], corpus_size: int) -> dict[str, Any]:
    """Our fields and AgentFlow's: ``context`` is its ``rag:search`` text, each document as
    ``[title]`` and its text (our title: the source path), between lines ``---`` (empty when
    nothing matched; AgentFlow answers a "no documents found" sentence)."""
    context = "\n---\n".join(f"[{r['source']}]\n{r['content']}" for r in results)
    return {"results": results, "corpus_size": corpus_size, "query": query, "context": context}


def _build(root: Path) -> tuple[list[Chunk], Any]:
    # Imported on warmup: a worker that never searches never loads it (nor needs the [rag] extra).
    bm25s = require("bm25s", "the rag backend")

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG

    chunks = load_chunks(root)
    index = bm25s.BM25()
    index.index(
        bm25s.tokenize([c.content for c in chunks], stopwords="en", show_progress=False),
        show_progress=False,
    )
    return chunks, index
