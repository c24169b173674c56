"""The one typed configuration of CarSpot.

Every knob is an environment variable prefixed ``CARSPOT_`` (or a line in ``.env``). ``carspot services up``
writes the addresses of the services it started to ``<data_dir>/services/services.env``, which is read after
``.env``, so the commands find the local services without any copy-paste; ``carspot services down`` removes it.
Built in ``main()``, never at import.

The database, for every command alike (docs/dashboard-access.md), is the first of:

1. ``CARSPOT_DATABASE_URL`` in the environment;
2. the PostgreSQL of ``carspot services up``, while its ``services.env`` is there (``up`` writes it, ``down``
   removes it; a crash leaves it, and the commands then say that PostgreSQL is not running rather than quietly
   switching to another database);
3. ``CARSPOT_DATABASE_URL`` in ``.env``;
4. SQLite at ``<data_dir>/carspot.db``.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from dotenv import dotenv_values
from pydantic import Field, PrivateAttr, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from carspot.pipeline.blas import BLAS_THREADS_DEFAULT

_REPO_ROOT = Path(__file__).resolve().parents[2]
YOLO_FASTEST_SHA256 = "27c34bbd0d054cf799ab45d31cba11dcf86cf482ccfb43fa002349f495db7671"


class AnalysisMode(StrEnum):
    """How an image is analysed (the reference paper's two modes and a faster third)."""

    STANDARD = "standard"
    REGION_SEARCH = "region-search"
    DETECTOR = "detector"


def default_shared_dir() -> Path:
    """``../shared`` beside the repository: real data, scenes and detector weights (read-only)."""
    return _REPO_ROOT.parent / "shared"


def services_env_file(data_dir: Path) -> Path:
    """Where ``carspot services up`` writes the endpoints of the services it started."""
    return data_dir / "services" / "services.env"


class Settings(BaseSettings):
    """CarSpot's settings. Each field's docstring (or description) is its line in docs/configuration.md."""

    # A variable set but empty (``CARSPOT_REDIS_URL=``) means unset: the default, never an empty URL or path.
    model_config = SettingsConfigDict(
        env_prefix="CARSPOT_", env_file=".env", extra="ignore", env_ignore_empty=True, use_attribute_docstrings=True
    )

    data_dir: Path = Field(default=Path(".carspot"), description="Local state: services, SQLite, caches.")
    shared_dir: Path = Field(default_factory=default_shared_dir, description="The read-only shared folder.")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers.")
    posts_topic: str = "carspot.posts"
    """Topic of posts."""
    dlq_topic: str = "carspot.posts.dlq"
    """Dead-letter topic."""
    posts_partitions: Annotated[int, Field(ge=1)] = 6
    """Partitions `services up` creates (the most workers that can be busy)."""
    consumer_group: str = "carspot-analyzers"
    """The workers' consumer group."""
    kafka_max_message_bytes: Annotated[int, Field(ge=1 << 20)] = 16 << 20
    """Largest message; a normalised image that still does not fit is rejected at ingest."""
    kafka_compression: str | None = "lz4"
    """Producer compression."""

    database_url: SecretStr = Field(default=SecretStr(""), description="SQLAlchemy URL; empty = SQLite under data_dir.")
    redis_url: SecretStr | None = Field(default=None, description="Redis for de-duplication; none = in memory.")
    redis_key_prefix: str = "carspot:"
    """Prefix of the de-duplication keys."""
    dedup_ttl_s: Annotated[int, Field(ge=60)] = 30 * 24 * 3600
    """How long a post id / image hash is remembered (30 days)."""

    jsonl_image_dirs: list[Path] = Field(
        default_factory=list,
        description='Folders besides its own a JSONL replay may read pictures from (JSON list, e.g. ["/data/img"]).',
    )

    image_max_side: Annotated[int, Field(ge=64, le=8192)] = 1024
    """Longer side of the normalised JPEG."""
    image_max_bytes: Annotated[int, Field(ge=1024)] = 20 << 20
    """Largest accepted input file (refused before it is read)."""
    image_max_pixels: Annotated[int, Field(ge=1)] = 50_000_000
    """Decompression-bomb guard, checked from the header before decoding."""
    image_jpeg_quality: Annotated[int, Field(ge=50, le=100)] = 90
    """Quality of the normalised JPEG."""
    dlq_max_original_bytes: Annotated[int, Field(ge=0)] = 1 << 20
    """How much of a bad input's original bytes a dead letter keeps."""

    # Fetching image URLs (X media, HTTP push with image_url): see carspot.ingest.fetch.
    fetch_connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    """Image URL fetching: connect timeout."""
    fetch_read_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    """Image URL fetching: read timeout."""
    fetch_total_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """Image URL fetching: whole download, all attempts."""
    fetch_max_redirects: Annotated[int, Field(ge=0, le=20)] = 5
    """Redirects followed (each hop re-vetted)."""
    fetch_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    """Attempts on timeouts and 5xx (capped backoff with jitter)."""
    fetch_backoff_max_s: Annotated[float, Field(gt=0)] = 8.0
    """Longest wait between attempts."""
    fetch_allow_loopback: bool = Field(default=False, description="Let image URLs reach 127/8 and ::1 (tests).")

    # Near-duplicate pictures (re-encoded or resized copies): 64-bit perceptual hash, Hamming distance.
    phash_dedup: bool = True
    """Also drop re-encoded or resized copies of a picture (perceptual hash)."""
    phash_threshold: Annotated[int, Field(ge=0, le=16)] = 4
    """Largest Hamming distance between 64-bit perceptual hashes counted as the same picture."""

    # X/Twitter (API v2 through tweepy).
    x_bearer_token: SecretStr | None = Field(default=None, description="X API v2 app-only bearer token.")
    x_api_base_url: str = Field(default="https://api.twitter.com", description="Where tweepy's requests go.")
    x_rules_file: Path | None = Field(default=None, description="Filtered-stream rules, one per line.")
    x_mode: str = Field(default="stream", pattern="^(stream|search)$", description="stream, or search polling.")
    x_search_interval_s: Annotated[float, Field(gt=0)] = 30.0
    """Recent-search polling interval."""
    x_search_max_pages: Annotated[int, Field(ge=1)] = 10
    """Pages (`next_token`) read per poll."""
    x_backoff_max_s: Annotated[float, Field(gt=0)] = 320.0
    """Longest reconnect wait after disconnects and 5xx."""
    x_checkpoint_every: Annotated[int, Field(ge=1)] = 100
    """Posts between checkpoints of the newest post id."""

    # The HTTP push endpoint (`carspot ingest http`).
    http_push_token: SecretStr | None = Field(default=None, description="Bearer token integrations must send.")
    http_push_host: str = "127.0.0.1"
    """Push endpoint address."""
    http_push_port: Annotated[int, Field(ge=1, le=65535)] = 8088
    """Push endpoint port."""
    http_push_ack_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    """How long a push waits for Kafka's acknowledgement before answering."""

    mode: AnalysisMode = AnalysisMode.DETECTOR
    """Default analysis mode: `detector`, `standard` or `region-search` (a post may ask for its own)."""
    detector: str = Field(
        default="centernet",
        pattern="^(yolo-fastestv2|centernet)$",
        description="Single-shot car detector of the detector mode.",
    )
    """centernet (MIT, from npm, committed under models/detectors): top-5 58.5 vs 50.7 % on the 400 composites,
    cars filling 5-10 % of the frame 57 vs 39 %, 25.6 vs 39.3 images/s (cars only, 0.3 score; with the defaults
    61.3 vs 53.5 % on held-out composites); yolo-fastestv2 needs ../shared (published without a licence)."""
    centernet_dir: Path = Field(
        default=_REPO_ROOT / "models" / "detectors" / "centernet",
        description="CenterNet: the repository's release (384 px), or a full build (carspot models build).",
    )
    centernet_input_size: Annotated[int, Field(ge=384, le=512, multiple_of=128)] = 384
    """CenterNet's input: `384` (the same weights with the upsampling sizes rewritten: 1.6x faster, as accurate;
    measured below) or `512` (the graph's own)."""
    proposal_backend: str = Field(default="opencv", pattern="^(opencv|selectivesearch)$")
    """Region proposals for region-search: `opencv` (ximgproc selective search) or `selectivesearch`."""
    proposal_max_side: Annotated[int, Field(ge=64, le=2048)] = 256
    """Proposals run on a copy downscaled to this longer side; boxes are mapped back."""
    proposal_mode: Literal["fast", "quality", "single"] = "single"  # = detector.proposals.ProposalMode
    """OpenCV selective search strategies: `single` (one segmentation, ~6x faster than `fast`), `fast`, `quality`."""
    proposal_max_count: Annotated[int, Field(ge=1, le=2000)] = 64
    """Most proposals kept per image (spread over sizes)."""
    region_car_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    # the value is carspot.analysis.modes.WHOLE_IMAGE_CAR_THRESHOLD's; why: there
    """A selective-search proposal is a car region when the model's car probability reaches this."""
    whole_image_car_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    """The whole image (detector and region-search modes) is a car region from this car probability: one test per
    image, so lower than a proposal's."""
    region_max_regions: Annotated[int, Field(ge=1, le=100)] = 10
    """Most car regions kept per image after NMS."""
    region_screen_count: Annotated[int, Field(ge=0, le=2000)] = 6
    """Region search: proposals given their own backbone pass, chosen by one whole-image pass (0 = every proposal,
    as the paper)."""
    region_screen_size: Annotated[int, Field(ge=64, le=2048, multiple_of=32)] = 448
    """Region search: side of that whole-image pass (multiple of 32)."""
    region_screen_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    """Region search: a proposal needs at least this rough P(car) from that pass to get its own pass."""
    region_whole_image: bool = True
    """Region search: the whole image is verified too, so a car filling the frame is found without a proposal."""
    region_max_inside: Annotated[float, Field(ge=0.0, le=1.0)] = 0.8
    """Region search: a car region with more than this share inside a likelier one is a part of the same car,
    dropped."""
    min_brand_confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    """An image whose best make's calibrated probability is below this is an unidentified car: its top-5 is stored,
    marked `unidentified`, and brand share does not count it (the dashboard counts it apart); 0 marks none. Chosen
    on `carspot evaluate`'s coverage / accuracy curve as the threshold that maximises right minus wrong brands
    counted per car image on both held-out sets (docs/benchmarks.md, 2026-12-06)."""
    thumbnail_retention_days: Annotated[int, Field(ge=0, le=3650)] = 30
    """Days a thumbnail of an analysed image is kept (the dashboards show them); `carspot thumbnails purge` deletes
    older ones and those of images no post shows any more; 0 keeps them until their last post goes."""
    rank_text_mentions: bool = True
    """A make the post's text names (hashtag, handle, brand or model name) that is in the image's top-5 counts as
    the image's make in brand share, the dashboard and reports (docs/mentions.md); false: the classifier's rank 1."""
    detector_weights: Path | None = Field(default=None, description="ONNX weights; default from shared_dir.")
    detector_sha256: str = YOLO_FASTEST_SHA256
    """The weights' expected sha256, checked at load."""
    detector_score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    """Lowest detector score kept; lower than the detectors' usual 0.3 because the box check drops what it lets
    through and the size floor the tiny boxes."""
    detector_car_classes: tuple[str, ...] = ("car", "truck")
    """COCO classes that count as cars: "truck" too, because COCO detectors call pickups, vans, big SUVs and many
    cars trucks."""
    detector_whole_image: bool = True
    # the value is carspot.analysis.modes.DETECTOR_BOX_CAR_THRESHOLD's; why: there
    """Detector mode: the whole image is verified by the brand model's car head too (a car filling the frame is
    often missed by the detector)."""
    detector_box_car_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.005
    """Detector mode: a box whose crop the model's car check gives a car probability below this is dropped (a
    detector's plain mistake); `0` keeps every box."""
    # the value is carspot.analysis.modes.DETECTOR_MIN_BOX_AREA's; why: there
    detector_min_box_area: Annotated[float, Field(ge=0.0)] = 2304.0
    """Detector mode: a box smaller than this many square pixels (48 × 48) is dropped before classification: blown
    up, such a crop shows no make yet gets a confident one; `0` keeps every box."""
    # the value is carspot.analysis.modes.DETECTOR_MAX_INSIDE's; why: there
    detector_max_inside: Annotated[float, Field(ge=0.0, le=1.0)] = 0.8
    """Detector mode: a box with more than this share of its area inside a more confident box is dropped before
    classification (a part of a car, a "car" inside a pickup's "truck" box); `1` keeps every box."""
    cv_threads: Annotated[int, Field(ge=0)] = 0
    """OpenCV threads (0 = OpenCV's default)."""
    blas_threads: Annotated[int, Field(ge=0)] = BLAS_THREADS_DEFAULT
    """Numpy's BLAS threads (0 = the library's default; more only spin: the products are small)."""

    model_dir: Path = Field(default=_REPO_ROOT / "models", description="Brand model registry (versions + CURRENT).")
    model_check_interval_s: Annotated[float, Field(gt=0)] = 5.0
    """How often a worker looks for a newly promoted model (it swaps without a restart)."""
    classifier_threads: Annotated[int, Field(ge=1)] = 2
    """Threads of the brand classifier's runtime (ONNX Runtime) and of CenterNet's (LiteRT)."""
    classifier_runtime: Literal["auto", "onnxruntime", "litert", "tensorflow"] = "auto"  # = runtime.RuntimeChoice
    """`auto`: TensorFlow when it sees a GPU (and the version ships `classifier.weights.h5`), else ONNX Runtime on
    CPU when the version ships its int8 `classifier.onnx`, else LiteRT; or `onnxruntime`, `litert`, `tensorflow`."""

    batch_max_messages: Annotated[int, Field(ge=1)] = 64
    """Most messages per worker batch. Each batch's look-ups, write and Kafka transaction cost the same whatever
    its size: 64 halves their share against 32 (measured in docs/capacity.md); a steady load polls smaller ones."""
    batch_max_seconds: Annotated[float, Field(gt=0)] = 5.0
    """A batch is cut after this long; the rest is re-read, so `max.poll.interval.ms` is never exceeded."""
    analysis_batch_images: Annotated[int, Field(ge=1, le=256)] = 8
    """Images whose regions go to the brand classifier in one call (raise it on a GPU); the time cut is checked
    between these groups."""
    max_poll_interval_ms: Annotated[int, Field(ge=10_000)] = 300_000
    """Kafka consumer `max.poll.interval.ms`."""

    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 0
    """Prometheus metrics on `http://metrics_host:(metrics_port + metrics_index)/metrics`; 0 = off.
    See docs/metrics.md for the series and the rule for several processes of one host."""
    metrics_index: Annotated[int, Field(ge=0, le=1024)] = 0
    """This process's number among those of one host sharing `metrics_port` (N workers: 0..N-1, N ports)."""
    metrics_host: str = Field(default="127.0.0.1", description="Address the metrics endpoint binds (0.0.0.0 in pods).")
    metrics_probe_interval_s: Annotated[float, Field(gt=0)] = 10.0
    """How often `carspot_service_up` probes the services this process uses (a TCP connect each)."""

    log_level: str = "INFO"
    """Log level."""
    log_json: bool = False
    """JSON log lines instead of key=value."""

    # The dashboard's sign-in (carspot.dashboards.auth; docs/dashboard-access.md).
    dashboard_session_hours: Annotated[float, Field(gt=0, le=24 * 30)] = 12.0
    """How long a dashboard sign-in lasts, in hours (then the browser signs in again)."""
    dashboard_cookie_secure: Literal["auto", "always", "never"] = "auto"
    """The session cookie's Secure flag: auto = when the request came over HTTPS (directly, or as a trusted
    proxy's X-Forwarded-Proto says); always behind a TLS proxy that is not listed as trusted."""
    dashboard_trusted_proxies: list[str] = Field(default_factory=list)
    """Reverse proxies (addresses or networks, a JSON list, e.g. ["127.0.0.1"]) whose X-Forwarded-For and
    X-Forwarded-Proto the dashboard believes: the client address that sign-in throttling counts, and HTTPS."""

    _database_origin: str | None = PrivateAttr(default=None)

    @classmethod
    def load(cls) -> Settings:
        """Read the environment, ``.env`` and the services file that ``carspot services up`` wrote (while it is
        there: ``carspot services down`` removes it), noting where the database URL came from."""
        dotenv = dotenv_values(".env") if Path(".env").is_file() else {}
        data_dir = Path(os.environ.get("CARSPOT_DATA_DIR") or dotenv.get("CARSPOT_DATA_DIR") or ".carspot")
        services_env = services_env_file(data_dir)
        settings = cls(_env_file=(".env", str(services_env)))  # type: ignore[call-arg]
        if os.environ.get("CARSPOT_DATABASE_URL"):
            settings._database_origin = "CARSPOT_DATABASE_URL in the environment"
        elif services_env.is_file() and dotenv_values(services_env).get("CARSPOT_DATABASE_URL"):
            settings._database_origin = (
                f"{services_env}, written by `carspot services up` (`carspot services down` removes it)"
            )
        elif dotenv.get("CARSPOT_DATABASE_URL"):
            settings._database_origin = "CARSPOT_DATABASE_URL in .env"
        return settings

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``data_dir`` (the embedded default)."""
        url = self.database_url.get_secret_value()
        return url or f"sqlite:///{(self.data_dir / 'carspot.db').resolve()}"

    @property
    def database_origin(self) -> str:
        """Which rule of the module docstring chose the database."""
        if self._database_origin is not None:
            return self._database_origin
        if self.database_url.get_secret_value():
            return "CARSPOT_DATABASE_URL"
        return "the default: SQLite in CARSPOT_DATA_DIR (no CARSPOT_DATABASE_URL, no `carspot services up` in force)"

    @property
    def database_from_services(self) -> bool:
        """Whether the database is the PostgreSQL that ``carspot services up`` started."""
        return self._database_origin is not None and "carspot services up" in self._database_origin

    def describe_database(self) -> str:
        """One line for start-up: the database URL without its password, and why it is that one."""
        from sqlalchemy.engine import make_url

        shown = make_url(self.resolved_database_url).render_as_string(hide_password=True)
        return f"database: {shown} ({self.database_origin})"

    @property
    def resolved_detector_weights(self) -> Path:
        return self.detector_weights or self.shared_dir / "models" / "yolo-fastestv2" / "model.onnx"

    @property
    def centernet_build_dir(self) -> Path:
        """Where `carspot models build --centernet` writes its full build (both sizes, the SavedModel)."""
        return self.data_dir / "models" / "centernet"

    @property
    def services_dir(self) -> Path:
        return self.data_dir / "services"
