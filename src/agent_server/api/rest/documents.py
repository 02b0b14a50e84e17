"""The caller's knowledge base, searched by the `search` tool."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from agent_server.api.deps import Documents, Offset, Principal
from agent_server.api.rest.schemas import (
    DocumentCreate,
    DocumentDetail,
    DocumentList,
    DocumentOut,
    ErrorResponse,
)
from agent_server.errors import DocumentNotFound
from agent_server.persistence.documents import Document

router = APIRouter(prefix="/api/documents", tags=["documents"])
NOT_FOUND = {404: {"model": ErrorResponse, "description": "No such document for this caller"}}


def document_out(doc: Document) -> DocumentOut:
    return DocumentOut(
        id=doc.id,
        title=doc.title,
        metadata=doc.metadata,
        created_at=doc.created_at,
        chars=len(doc.content),
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=DocumentOut)
async def add_document(body: DocumentCreate, store: Documents, principal: Principal) -> DocumentOut:
    doc = await store.add(principal, body.title, body.content, body.metadata)
    return document_out(doc)


@router.get("", response_model=DocumentList)
async def list_documents(
    store: Documents,
    principal: Principal,
    limit: int = Query(50, ge=1, le=200),
    offset: Offset = 0,
) -> DocumentList:
    docs = await store.list(principal, limit=limit, offset=offset)
    return DocumentList(documents=[document_out(d) for d in docs], limit=limit, offset=offset)


@router.get("/{document_id}", response_model=DocumentDetail, responses=NOT_FOUND)
async def get_document(document_id: str, store: Documents, principal: Principal) -> DocumentDetail:
    doc = await store.get(principal, document_id)
    if doc is None:
        raise DocumentNotFound(document_id)
    return DocumentDetail(**document_out(doc).model_dump(), content=doc.content)


@router.delete(
    "/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=NOT_FOUND,
)
async def delete_document(document_id: str, store: Documents, principal: Principal) -> Response:
    if not await store.delete(principal, document_id):
        raise DocumentNotFound(document_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
