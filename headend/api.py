"""Placeholder: the REST API (v1) for the HTTTN and other tools."""

from __future__ import annotations

from fastapi import APIRouter

from headend.web_context import WebContext

API_DESCRIPTION = "LoaXa REST API"


def api_router(ctx: WebContext) -> APIRouter:
    return APIRouter()
