"""The one typed configuration of CarSpot.

Every knob is an environment variable prefixed ``CARSPOT_`` (or a line in ``.env``). ``carspot services up``
writes the addresses of the services it started to ``<data_dir>/services/services.env``, which is read after
``.env``, so the commands find the local services without any copy-paste. Built in ``main()``, never at import.
"""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

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
    """CarSpot's settings; see the README's configuration table."""

    # A variable set but empty (``CARSPOT_REDIS_URL=``) means unset: the default, never an empty URL or path.
    model_config = SettingsConfigDict(env_prefix="CARSPOT_", env_file=".env", extra="ignore", env_ignore_empty=True)

    data_dir: Path = Field(default=Path(".carspot"), description="Local state: services, SQLite, caches.")
    shared_dir: Path = Field(default_factory=default_shared_dir, description="The read-only shared folder.")

    kafka_bootstrap: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers.")
    posts_topic: str = "carspot.posts"
    dlq_topic: str = "carspot.posts.dlq"
    posts_partitions: Annotated[int, Field(ge=1)] = 6
    consumer_group: str = "carspot-analyzers"
    kafka_max_message_bytes: Annotated[int, Field(ge=1 << 20)] = 16 << 20
    kafka_compression: str | None = "lz4"

    database_url: SecretStr = Field(default=SecretStr(""), description="SQLAlchemy URL; empty = SQLite under data_dir.")
    redis_url: SecretStr | None = Field(default=None, description="Redis for de-duplication; none = in memory.")
    redis_key_prefix: str = "carspot:"
    dedup_ttl_s: Annotated[int, Field(ge=60)] = 30 * 24 * 3600

    jsonl_image_dirs: list[Path] = Field(
        default_factory=list,
        description='Folders besides its own a JSONL replay may read pictures from (JSON list, e.g. ["/data/img"]).',
    )

    image_max_side: Annotated[int, Field(ge=64, le=8192)] = 1024
    image_max_bytes: Annotated[int, Field(ge=1024)] = 20 << 20
    image_max_pixels: Annotated[int, Field(ge=1)] = 50_000_000
    image_jpeg_quality: Annotated[int, Field(ge=50, le=100)] = 90
    dlq_max_original_bytes: Annotated[int, Field(ge=0)] = 1 << 20

    # Fetching image URLs (X media, HTTP push with image_url): see carspot.ingest.fetch.
    fetch_connect_timeout_s: Annotated[float, Field(gt=0)] = 5.0
    fetch_read_timeout_s: Annotated[float, Field(gt=0)] = 10.0
    fetch_total_timeout_s: Annotated[float, Field(gt=0)] = 30.0
    fetch_max_redirects: Annotated[int, Field(ge=0, le=20)] = 5
    fetch_attempts: Annotated[int, Field(ge=1, le=10)] = 3
    fetch_backoff_max_s: Annotated[float, Field(gt=0)] = 8.0
    fetch_allow_loopback: bool = Field(default=False, description="Let image URLs reach 127/8 and ::1 (tests).")

    # Near-duplicate pictures (re-encoded or resized copies): 64-bit perceptual hash, Hamming distance.
    phash_dedup: bool = True
    phash_threshold: Annotated[int, Field(ge=0, le=16)] = 4

    # X/Twitter (API v2 through tweepy).
    x_bearer_token: SecretStr | None = Field(default=None, description="X API v2 app-only bearer token.")
    x_api_base_url: str = Field(default="https://api.twitter.com", description="Where tweepy's requests go.")
    x_rules_file: Path | None = Field(default=None, description="Filtered-stream rules, one per line.")
    x_mode: str = Field(default="stream", pattern="^(stream|search)$", description="stream, or search polling.")
    x_search_interval_s: Annotated[float, Field(gt=0)] = 30.0
    x_search_max_pages: Annotated[int, Field(ge=1)] = 10
    x_backoff_max_s: Annotated[float, Field(gt=0)] = 320.0
    x_checkpoint_every: Annotated[int, Field(ge=1)] = 100

    # The HTTP push endpoint (`carspot ingest http`).
    http_push_token: SecretStr | None = Field(default=None, description="Bearer token integrations must send.")
    http_push_host: str = "127.0.0.1"
    http_push_port: Annotated[int, Field(ge=1, le=65535)] = 8088
    http_push_ack_timeout_s: Annotated[float, Field(gt=0)] = 30.0

    mode: AnalysisMode = AnalysisMode.DETECTOR
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
    """384 or 512, = detector.centernet.INPUT_SIZES (a Literal of ints would refuse the environment's "384").
    384 by measurement: 26.0 vs 16.3 images/s in detector mode, top-5 58.8 vs 59.5 % on the 400 composites,
    73.8 vs 73.9 % on the by-model photos."""
    proposal_backend: str = Field(default="opencv", pattern="^(opencv|selectivesearch)$")
    proposal_max_side: Annotated[int, Field(ge=64, le=2048)] = 256
    proposal_mode: Literal["fast", "quality", "single"] = "single"  # = detector.proposals.ProposalMode
    proposal_max_count: Annotated[int, Field(ge=1, le=2000)] = 64
    region_car_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    whole_image_car_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    """= carspot.pipeline.analysis.WHOLE_IMAGE_CAR_THRESHOLD (why this value: there)."""
    region_max_regions: Annotated[int, Field(ge=1, le=100)] = 10
    region_screen_count: Annotated[int, Field(ge=0, le=2000)] = 6
    region_screen_size: Annotated[int, Field(ge=64, le=2048, multiple_of=32)] = 448
    region_screen_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    region_whole_image: bool = True
    region_max_inside: Annotated[float, Field(ge=0.0, le=1.0)] = 0.8
    """Region search: a car region with more than this share of its area inside a likelier one is the same car
    (a door, a wheel, the front): dropped after NMS, whose IoU keeps a part inside a whole; 1 keeps every one.
    Measured with model 20261201T032453Z (`bench/cars.py`): 300 single-car Stanford photos 1.48 / 1.30 / 1.21
    car regions per photo at 1 / 0.8 / 0.5, top-5 94.3 % at each; 400 seed-7 composites (1.53 pasted cars per
    image) 1.66 / 1.43 / 1.33, top-5 56.8 / 56.8 / 56.5 %. 0.8, as ``detector_max_inside``."""
    min_brand_confidence: Annotated[float, Field(ge=0.0, le=1.0)] = 0.3
    """An image whose best make has a calibrated probability below this is an unidentified car: its top-5 is
    stored, marked unidentified, and brand share does not count it (dashboards count it apart); 0 marks none.
    Chosen on the coverage / accuracy curve `carspot evaluate` prints, with model 20261201T032453Z in detector
    mode on the 1,681 by-model validation photos (2026-12-06; answered share, top-1 / top-5 of the answered):
    0 -> 99.6 %, 57.2 / 76.9 %; 0.1 -> 98.5 %, 57.7 / 77.5 %; 0.2 -> 84.8 %, 64.7 / 82.7 %; 0.3 -> 70.7 %,
    71.0 / 87.4 %; 0.4 -> 58.6 %, 78.1 / 90.9 %; 0.5 -> 48.7 %, 83.6 / 92.4 %. 0.3 is the lowest threshold of
    that 0.1 grid at which the rank-1 make, what brand share counts, is right at least two times in three, and
    it still answers for 7 car photos in 10. A new model has another curve: read it again before promoting one."""
    detector_weights: Path | None = Field(default=None, description="ONNX weights; default from shared_dir.")
    detector_sha256: str = YOLO_FASTEST_SHA256
    detector_score_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.1
    """0.1, not the detectors' own 0.3: the car head's box check (``detector_box_car_threshold``) drops what a lower
    score lets through, and the size floor (``detector_min_box_area``) the tiny boxes whose crops get confident
    wrong makes. CenterNet, the brand model on ONNX Runtime, the default 2,304 px² floor, 0.2 / 0.1: by-model
    photos top-5 75.0 / 74.8 % (top-1 52.8 / 52.6 %); 400 seed-7 composites (where the values were chosen)
    64.5 / 67.2 %. Held out (400 seed-11 composites, 4,096 px² floor, the same as 2,304 at 0.1): 61.3 / 63.7 %,
    cars filling 5-10 % 47 / 53 %, 37.4 / 35.6 images/s. YOLO-FastestV2, seed-7: 58.5 % (0.2, no floor) / 59.5 %
    (0.1, 4,096). No car-free image (55) got brands. Without a floor, 0.1 cost the by-model photos 1.6 points of
    top-1. Before (LiteRT, no floor), 0.3 / 0.2: CenterNet 57.8 / 61.3 % on the held-out composites."""
    detector_car_classes: tuple[str, ...] = ("car", "truck")
    """COCO's "truck" too: pickups, vans and big SUVs are makes' cars (Stanford Cars has them) and COCO detectors
    often call them, or a car seen at an odd scale, trucks. Measured on the 400 composites, top-5 with "car" vs
    "car"+"truck": CenterNet 58.5 -> 59.8 % (5 images gained, none lost), YOLO-FastestV2 50.8 -> 56.3 % (22 / 0);
    by-model photos 73.8 -> 74.1 % and 73.6 -> 74.4 %; no car-free image got brands. "bus" added nothing."""
    detector_whole_image: bool = True
    detector_box_car_threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.005
    """= carspot.pipeline.analysis.DETECTOR_BOX_CAR_THRESHOLD (why this value: there); 0 keeps every box."""
    detector_min_box_area: Annotated[float, Field(ge=0.0)] = 2304.0
    """= carspot.pipeline.analysis.DETECTOR_MIN_BOX_AREA (why this value: there); 0 keeps every box."""
    detector_max_inside: Annotated[float, Field(ge=0.0, le=1.0)] = 0.8
    """= carspot.pipeline.analysis.DETECTOR_MAX_INSIDE (why this value: there); 1 keeps every box."""
    cv_threads: Annotated[int, Field(ge=0)] = 0
    blas_threads: Annotated[int, Field(ge=0)] = 1
    """numpy's BLAS threads (0 = the library's default). The analysis multiplies small matrices (the car head:
    at most 64 x 1280 by 1280 x 1000); OpenBLAS's idle threads spin after each product and took the other core
    from a second worker process (measured: two region-search processes 0.41 s/image each with the default,
    0.20 s/image with one thread)."""

    model_dir: Path = Field(default=_REPO_ROOT / "models", description="Brand model registry (versions + CURRENT).")
    model_check_interval_s: Annotated[float, Field(gt=0)] = 5.0
    classifier_threads: Annotated[int, Field(ge=1)] = 2
    classifier_runtime: Literal["auto", "onnxruntime", "litert", "tensorflow"] = "auto"  # = runtime.RuntimeChoice
    """auto: TensorFlow when it sees a GPU and the model version ships its Keras weights, else ONNX Runtime when
    it ships its int8 ONNX file (CPU, the fastest measured), else LiteRT (CPU)."""

    batch_max_messages: Annotated[int, Field(ge=1)] = 32
    batch_max_seconds: Annotated[float, Field(gt=0)] = 5.0
    analysis_batch_images: Annotated[int, Field(ge=1, le=256)] = 8
    """Images whose regions go to the brand classifier in one call (a GPU wants more; the time cut of a batch
    is checked between these groups, so a group's analysis should stay well under ``batch_max_seconds``)."""
    max_poll_interval_ms: Annotated[int, Field(ge=10_000)] = 300_000

    log_level: str = "INFO"
    log_json: bool = False

    @classmethod
    def load(cls) -> Settings:
        """Read the environment, ``.env`` and the services file that ``carspot services up`` wrote."""
        data_dir = Path(os.environ.get("CARSPOT_DATA_DIR", ".carspot"))
        env_files = (".env", str(services_env_file(data_dir)))
        return cls(_env_file=env_files)  # type: ignore[call-arg]

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under ``data_dir`` (the embedded default)."""
        url = self.database_url.get_secret_value()
        return url or f"sqlite:///{(self.data_dir / 'carspot.db').resolve()}"

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
