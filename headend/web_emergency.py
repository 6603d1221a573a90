"""Placeholder while the pages are written."""

from __future__ import annotations

from fastapi import APIRouter

from headend.web_context import WebContext


def emergency_router(ctx: WebContext) -> APIRouter:
    return APIRouter()
