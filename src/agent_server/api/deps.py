"""Request-scoped dependencies: who is calling, and the services built at start-up."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from agent_server.api.service import ChatService
from agent_server.config import LOCAL_PRINCIPAL
from agent_server.persistence.documents import DocumentStore
from agent_server.resources import Resources


def get_principal() -> str:
    """The caller's identity. With no API keys configured everything belongs to
    the local principal; key-based principals replace this in one place."""
    return LOCAL_PRINCIPAL


def get_service(request: Request) -> ChatService:
    return request.app.state.service


def get_resources(request: Request) -> Resources:
    return request.app.state.resources


def get_documents(request: Request) -> DocumentStore:
    return request.app.state.resources.documents


Principal = Annotated[str, Depends(get_principal)]
Service = Annotated[ChatService, Depends(get_service)]
Documents = Annotated[DocumentStore, Depends(get_documents)]
AppResources = Annotated[Resources, Depends(get_resources)]
