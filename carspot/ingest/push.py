"""The HTTP push source: integrations ``POST /v1/posts`` and get ``202`` once the post is in Kafka.

Two ways to send one post with one picture::

    POST /v1/posts   Authorization: Bearer <token>
      Content-Type: application/json       {"post_id": "abc", "image_url": "https://...", "author": "...",
                                             "text": "...", "url": "...", "posted_at": "2026-05-01T10:00:00Z",
                                             "campaign": "spring-launch"}
      Content-Type: multipart/form-data    the same fields as form fields, and the picture as file ``image``

Answers (every error body is ``{"reason": <code>, "detail": <text>}``, the codes of the dead-letter topic)::

    202  {"post_id": "http:abc", "status": "accepted" | "linked" | "duplicate", "image_sha256": ...}
         accepted: in Kafka with its picture; linked: in Kafka, the same picture was already sent;
         duplicate: this post id was already ingested (a retry), nothing new was sent
    401  no bearer token            403  wrong token            413  body over the size limit ("too_large")
    415  neither JSON nor multipart 422  invalid fields ("invalid_request") or a picture refused for a reason
                                         ("not_an_image", "ssrf_refused", "http_404", ...: also dead-lettered)
    503  the post could not be put in Kafka ("unavailable"); nothing was claimed, the client may retry

The post id is ``"http:" + post_id`` (a client's retry with the same ``post_id`` is a duplicate, not a second
post); without one, a random id. The app only parses and authenticates: ``ingest_one`` (see
:class:`PushIngest`) normalises, de-duplicates and submits, and is injected so tests need no Kafka.
"""

from __future__ import annotations

import hmac
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from carspot.ingest.dedup import Deduplicator
from carspot.ingest.fields import MAX_CAMPAIGN_CHARS, check_campaign
from carspot.ingest.images import NormalizedImage
from carspot.ingest.loop import IngestedPost, IngestObserver, Rejection, run_ingest
from carspot.ingest.phash import NearDuplicateIndex
from carspot.ingest.sources import RawPost

logger = logging.getLogger("carspot.ingest.push")

SOURCE = "http"
#: Room for the multipart envelope and the text fields on top of the picture's own limit.
ENVELOPE_BYTES = 64 << 10
_POST_ID_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"


class PostFields(BaseModel):
    """The post's metadata, common to both content types."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    post_id: Annotated[str | None, Field(pattern=_POST_ID_PATTERN, description="The client's id, for retries.")] = None
    author: Annotated[str | None, Field(max_length=256)] = None
    text: Annotated[str | None, Field(max_length=10_000)] = None
    url: Annotated[str | None, Field(max_length=2048, description="Where the post can be seen.")] = None
    posted_at: AwareDatetime | None = None
    campaign: Annotated[
        str | None,
        Field(
            max_length=MAX_CAMPAIGN_CHARS,
            description="The campaign the post belongs to: letters, digits, '_', '.', '-' (dashboards group by it).",
        ),
    ] = None

    @field_validator("campaign")
    @classmethod
    def _campaign(cls, value: str | None) -> str | None:
        return check_campaign("campaign", value)


class JsonPost(PostFields):
    """A post whose picture CarSpot fetches (safely: only public http/https addresses)."""

    image_url: Annotated[str, Field(min_length=1, max_length=4096, pattern=r"^https?://")]


class Accepted(BaseModel):
    post_id: str
    status: Literal["accepted", "linked", "duplicate"]
    image_sha256: str | None = None


class Problem(BaseModel):
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class PushOutcome:
    post_id: str
    status: Literal["accepted", "linked", "duplicate"]
    image_sha256: str | None = None


class PushRejected(Exception):
    """The post was refused (and dead-lettered) for ``reason``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class PushIngest:
    """One pushed post through the same :func:`run_ingest` as every source: claims, normalising, linking.

    ``submit`` must return only once the post is durably accepted (the Kafka wiring waits for the ack) and
    raise otherwise: the claims are then released and the client told 503. ``dead_letter`` receives the
    rejections (a refused picture is dead-lettered like from any source, and the client told 422).
    """

    def __init__(
        self,
        *,
        submit: Callable[[IngestedPost], None],
        dead_letter: Callable[[Rejection], None],
        dedup: Deduplicator,
        normalize: Callable[[bytes], NormalizedImage],
        near_duplicates: NearDuplicateIndex | None = None,
        max_dlq_bytes: int = 1 << 20,
        observer: IngestObserver | None = None,
    ) -> None:
        self._observer = observer
        self._near_duplicates = near_duplicates
        self._submit = submit
        self._dead_letter = dead_letter
        self._dedup = dedup
        self._normalize = normalize
        self._max_dlq_bytes = max_dlq_bytes

    def __call__(self, post: RawPost) -> PushOutcome:
        emitted: list[IngestedPost] = []
        rejected: list[Rejection] = []

        def emit(ingested: IngestedPost) -> None:
            self._submit(ingested)
            emitted.append(ingested)

        def reject(rejection: Rejection) -> None:
            self._dead_letter(rejection)
            rejected.append(rejection)

        run_ingest(
            [post],
            emit=emit,
            reject=reject,
            dedup=self._dedup,
            normalize=self._normalize,
            max_dlq_bytes=self._max_dlq_bytes,
            progress_interval_s=float("inf"),
            near_duplicates=self._near_duplicates,
            observer=self._observer,
        )
        if rejected:
            raise PushRejected(rejected[0].reason, rejected[0].detail)
        if emitted:
            first = emitted[0]
            status: Literal["accepted", "linked"] = "linked" if first.duplicate_of_image else "accepted"
            return PushOutcome(first.post_id, status, first.image_sha256)
        return PushOutcome(post.post_id, "duplicate")


def create_push_app(
    *,
    token: SecretStr,
    ingest_one: Callable[[RawPost], PushOutcome],
    fetch: Callable[[str], bytes],
    max_image_bytes: int,
    healthy: Callable[[], bool] = lambda: True,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> FastAPI:
    """The FastAPI app; ``fetch`` fetches an ``image_url`` (the safe fetcher's ``fetch_bytes``)."""
    if not token.get_secret_value():
        raise ValueError("the push endpoint needs a non-empty bearer token")
    max_body = max_image_bytes + ENVELOPE_BYTES
    app = FastAPI(
        title="CarSpot ingest",
        version="1",
        description="Push image posts into CarSpot: which car brands appear in them.",
    )

    @app.exception_handler(_Problem)
    async def problem(_request: Request, exc: _Problem) -> JSONResponse:
        return JSONResponse({"reason": exc.reason, "detail": exc.detail}, exc.status, headers=exc.headers)

    @app.get("/healthz", tags=["ops"])
    def healthz() -> JSONResponse:
        ok = healthy()
        return JSONResponse({"status": "ok" if ok else "unavailable"}, 200 if ok else 503)

    @app.post(
        "/v1/posts",
        status_code=202,
        response_model=Accepted,
        tags=["ingest"],
        summary="Submit one image post",
        responses={
            401: {"model": Problem, "description": "No bearer token."},
            403: {"model": Problem, "description": "Wrong bearer token."},
            413: {"model": Problem, "description": "Body over the size limit."},
            415: {"model": Problem, "description": "Neither JSON nor multipart/form-data."},
            422: {"model": Problem, "description": "Invalid fields, or the picture was refused (reason)."},
            503: {"model": Problem, "description": "Could not be put in Kafka; retry."},
        },
        openapi_extra={"requestBody": _request_body_schema()},
        dependencies=[Depends(_TokenCheck(token))],
    )
    async def submit_post(request: Request) -> Accepted:
        body = await _read_capped(request, max_body)
        content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type == "application/json":
            fields, read_image, image_ref = _from_json(body, fetch)
        elif content_type == "multipart/form-data":
            fields, read_image, image_ref = await _from_multipart(request, body, max_image_bytes)
        else:
            raise _Problem(415, "unsupported_media_type", "send application/json or multipart/form-data")
        try:
            post = RawPost(
                post_id=f"{SOURCE}:{fields.post_id or new_id()}",
                source=SOURCE,
                author=fields.author,
                text=fields.text,
                url=fields.url,
                posted_at=fields.posted_at,
                image_ref=image_ref,
                read_image=read_image,
                campaign=fields.campaign,
            )
        except ValueError as exc:  # a field the store could not hold (NUL, a lone surrogate)
            raise _Problem(422, "invalid_post", str(exc)) from exc
        try:
            outcome = await run_in_threadpool(ingest_one, post)
        except PushRejected as exc:
            status = 413 if exc.reason == "too_large" else 422
            raise _Problem(status, exc.reason, exc.detail) from exc
        except Exception as exc:
            logger.warning("push of %s could not be submitted: %s: %s", post.post_id, type(exc).__name__, exc)
            raise _Problem(503, "unavailable", "the post could not be queued; retry later") from exc
        return Accepted(post_id=outcome.post_id, status=outcome.status, image_sha256=outcome.image_sha256)

    return app


_BEARER = HTTPBearer(auto_error=False, description="The token configured as CARSPOT_HTTP_PUSH_TOKEN.")


class _TokenCheck:
    """401 without a bearer token, 403 with another one (compared in constant time)."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token.get_secret_value().encode()

    def __call__(self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)]) -> None:
        if credentials is None:
            raise _Problem(401, "unauthorized", "a bearer token is required", {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(credentials.credentials.encode(), self._token):
            raise _Problem(403, "forbidden", "this token is not allowed to push posts")


class _Problem(Exception):
    def __init__(self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail
        self.headers = headers


async def _read_capped(request: Request, limit: int) -> bytes:
    """The body, refused with 413 from its Content-Length, or as soon as more than ``limit`` bytes arrived."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _Problem(413, "too_large", f"body of {declared} bytes, limit {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _Problem(413, "too_large", f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _invalid(exc: ValidationError | ValueError) -> _Problem:
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
        return _Problem(422, "invalid_request", "; ".join(parts))
    return _Problem(422, "invalid_request", str(exc))


def _from_json(body: bytes, fetch: Callable[[str], bytes]) -> tuple[PostFields, Callable[[], bytes], str]:
    try:
        fields = JsonPost.model_validate_json(body)
    except ValidationError as exc:
        raise _invalid(exc) from exc
    return fields, partial(fetch, fields.image_url), fields.image_url


async def _from_multipart(
    request: Request, body: bytes, max_image_bytes: int
) -> tuple[PostFields, Callable[[], bytes], str]:
    async def replay() -> AsyncIterator[bytes]:
        yield body

    stream = replay()  # a fresh Request over the same scope is fed the body already read (and capped)

    async def receive() -> dict[str, Any]:
        try:
            chunk = await anext(stream)
        except StopAsyncIteration:
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    replayed = Request(request.scope, receive=receive)
    try:
        form = await replayed.form(max_files=1, max_fields=16)
    except Exception as exc:  # python-multipart's and Starlette's parse errors
        raise _Problem(422, "invalid_request", f"malformed multipart body: {exc}") from exc
    try:
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise ValueError("multipart field 'image' (a file) is required")
        data = await image.read(max_image_bytes + 1)
        if len(data) > max_image_bytes:
            raise _Problem(413, "too_large", f"image over {max_image_bytes} bytes")
        values = {k: v for k, v in form.items() if k != "image"}
        if any(not isinstance(v, str) for v in values.values()):
            raise ValueError("only 'image' may be a file")
        fields = PostFields.model_validate({k: v for k, v in values.items() if v != ""})
    except (ValidationError, ValueError) as exc:
        raise _invalid(exc) from exc
    finally:
        await form.close()
    name = image.filename or "upload"
    return fields, lambda: data, f"upload:{name}"


def _request_body_schema() -> dict[str, Any]:
    fields = PostFields.model_json_schema()["properties"]
    return {
        "required": True,
        "content": {
            "application/json": {"schema": JsonPost.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {"image": {"type": "string", "format": "binary"}, **fields},
                }
            },
        },
    }


__all__ = [
    "Accepted",
    "JsonPost",
    "PostFields",
    "PushIngest",
    "PushOutcome",
    "PushRejected",
    "create_push_app",
]
