"""Why ingest refuses an input, as exceptions that carry a stable ``reason`` code for the dead-letter topic.

Every refusal is one of these, so the producer loop has one place that turns an exception into a rejection::

    IngestError                      reason "ingest_error"   (base; never raised directly)
    ├── ImageError                   the bytes are not a picture ingest will pass on
    │   ├── EmptyImage               "empty"               zero bytes
    │   ├── NotAnImage               "not_an_image"        text, HTML, JSON or unknown bytes (sniffed, never
    │   │                                                  trusted from the file name)
    │   ├── UnsupportedImage         "unsupported"         a picture in a format or mode we do not decode
    │   │                                                  (HEIC, SVG, PSD, a LAB-mode TIFF, ...)
    │   ├── TruncatedImage           "truncated"           the file ends before the picture does
    │   ├── CorruptImage             "corrupt"             a known format whose data does not parse
    │   ├── ImageTooLarge            "too_large"           more bytes than the limit (checked before reading)
    │   ├── DecompressionBomb        "decompression_bomb"  the header claims more pixels than the limit
    │   │                                                  (checked before any pixel is decoded)
    │   └── EncodedTooLarge          "encoded_too_large"   the normalised JPEG still exceeds the message limit
    └── SourceError                  "unreadable"          the source could not give us the bytes
        ├── ImageMissing             "unreadable"          (the referenced file does not exist)
        ├── PathNotAllowed           "path_not_allowed"    a replay's image path resolves (symlinks too) outside
        │                                                  the folders it may read, or into the data dir;
        │                                                  refused before a byte is read
        └── FetchError               "fetch_failed"        an image URL could not be fetched (connection
            │                                              refused or reset, TLS failure, bad response)
            ├── BadUrl               "bad_url"             not an absolute http(s) URL with a host
            ├── SsrfRefused          "ssrf_refused"        the host is or resolves to an address we never
            │                                              connect to (private, loopback, link-local, ...),
            │                                              refused before any connection is attempted
            ├── UnresolvableHost     "unresolvable"        DNS gave no address for the host
            ├── FetchTimeout         "fetch_timeout"       connect or read took longer than allowed
            ├── TooManyRedirects     "too_many_redirects"  more hops than allowed (or a redirect loop)
            ├── HttpNotFound         "http_404"            404 or 410: the picture is gone
            ├── HttpClientError      "http_4xx"            any other 4xx status (never retried)
            └── HttpServerError      "http_5xx"            a 5xx status (retried, then this)

A fetched body over the size limit is an ``ImageTooLarge`` ("too_large", aborted while streaming) and a body
that is not a picture a ``NotAnImage`` ("not_an_image", sniffed from the first bytes), like any other input.

The codes are part of the dead-letter contract (dashboards count them): add new ones, never rename.
"""

from __future__ import annotations

from typing import ClassVar


class IngestError(Exception):
    """Base of every refusal; ``reason`` is the machine code, ``str(exc)`` the human detail."""

    reason: ClassVar[str] = "ingest_error"


class ImageError(IngestError):
    """The bytes were read but are not a picture ingest will pass on."""

    reason: ClassVar[str] = "image_error"


class EmptyImage(ImageError):
    reason: ClassVar[str] = "empty"


class NotAnImage(ImageError):
    reason: ClassVar[str] = "not_an_image"


class UnsupportedImage(ImageError):
    reason: ClassVar[str] = "unsupported"


class TruncatedImage(ImageError):
    reason: ClassVar[str] = "truncated"


class CorruptImage(ImageError):
    reason: ClassVar[str] = "corrupt"


class ImageTooLarge(ImageError):
    """More bytes than allowed; ``size`` is the known size (from ``stat`` or ``len``), if any."""

    reason: ClassVar[str] = "too_large"

    def __init__(self, detail: str, *, size: int | None = None, limit: int | None = None) -> None:
        super().__init__(detail)
        self.size = size
        self.limit = limit


class DecompressionBomb(ImageError):
    reason: ClassVar[str] = "decompression_bomb"


class EncodedTooLarge(ImageError):
    reason: ClassVar[str] = "encoded_too_large"


class SourceError(IngestError):
    """The source could not hand over the bytes (I/O error, permission, not a regular file)."""

    reason: ClassVar[str] = "unreadable"


class ImageMissing(SourceError):
    """The file is not there; same code as any unreadable source, the detail says which."""


class PathNotAllowed(SourceError):
    """A file path that resolves outside the allowed folders: never read, so its dead letter carries no bytes."""

    reason: ClassVar[str] = "path_not_allowed"


class FetchError(SourceError):
    """Fetching an image URL failed; ``url`` is the URL of the hop that failed (never with credentials)."""

    reason: ClassVar[str] = "fetch_failed"

    def __init__(self, detail: str, *, url: str | None = None) -> None:
        super().__init__(detail)
        self.url = url


class BadUrl(FetchError):
    reason: ClassVar[str] = "bad_url"


class SsrfRefused(FetchError):
    reason: ClassVar[str] = "ssrf_refused"


class UnresolvableHost(FetchError):
    reason: ClassVar[str] = "unresolvable"


class FetchTimeout(FetchError):
    reason: ClassVar[str] = "fetch_timeout"


class TooManyRedirects(FetchError):
    reason: ClassVar[str] = "too_many_redirects"


class HttpStatusError(FetchError):
    """A status the fetcher does not accept; ``status`` is the HTTP status code."""

    def __init__(self, detail: str, *, status: int, url: str | None = None) -> None:
        super().__init__(detail, url=url)
        self.status = status


class HttpNotFound(HttpStatusError):
    reason: ClassVar[str] = "http_404"


class HttpClientError(HttpStatusError):
    reason: ClassVar[str] = "http_4xx"


class HttpServerError(HttpStatusError):
    reason: ClassVar[str] = "http_5xx"


__all__ = [
    "BadUrl",
    "CorruptImage",
    "DecompressionBomb",
    "EmptyImage",
    "EncodedTooLarge",
    "FetchError",
    "FetchTimeout",
    "HttpClientError",
    "HttpNotFound",
    "HttpServerError",
    "HttpStatusError",
    "ImageError",
    "ImageMissing",
    "ImageTooLarge",
    "IngestError",
    "NotAnImage",
    "PathNotAllowed",
    "SourceError",
    "SsrfRefused",
    "TooManyRedirects",
    "TruncatedImage",
    "UnresolvableHost",
    "UnsupportedImage",
]
