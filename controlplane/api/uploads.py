"""``PUT /v1/uploads/{sha256}/{name}``: files a remote client sends (models, examples, data).

The body is the raw file. The token is checked before a byte is read; the body is streamed
to disk, bounded by ``MLCP_API_MAX_UPLOAD_MB``, and kept only if it hashes to the digest in
the path. ``HEAD`` says whether it is already there (a retry skips the upload).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, Response

from controlplane.api.auth import require
from controlplane.tokens import Principal
from controlplane.uploads import UploadStore

Uploader = Annotated[Principal, Depends(require("upload"))]

router = APIRouter()


def upload_store(request: Request) -> UploadStore:
    settings = request.app.state.cp.settings
    return UploadStore(settings.home / "uploads", settings.api_max_upload_mb << 20)


@router.head("/v1/uploads/{sha256}/{name}")
def upload_exists(sha256: str, name: str, request: Request, _: Uploader) -> Response:
    if not upload_store(request).exists(sha256, name):
        raise HTTPException(404, f"upload {sha256}/{name} is not stored")
    return Response(status_code=200)


@router.put("/v1/uploads/{sha256}/{name}", status_code=201)
async def upload(sha256: str, name: str, request: Request, _: Uploader) -> dict[str, object]:
    store = upload_store(request)
    with store.writer(sha256, name) as out:
        async for chunk in request.stream():
            out.write(chunk)
    return {"upload": f"{sha256}/{name}", "bytes": out.bytes}
