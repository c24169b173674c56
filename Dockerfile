# CarSpot worker/ingest image. The released brand model and the default car detector (CenterNet, 384 px, built
# from its npm package: models/detectors) are part of the image; the shared folder's detectors are mounted (see
# docker-compose.yml); nothing is downloaded. For a GPU worker: `docker build --build-arg EXTRAS="[gpu]" .`
# (TensorFlow with CUDA; the worker then serves the brand model on the GPU, CARSPOT_CLASSIFIER_RUNTIME=auto).
FROM python:3.11-slim
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 CARSPOT_MODEL_DIR=/app/models \
    CARSPOT_CENTERNET_DIR=/app/models/detectors/centernet
WORKDIR /app
COPY pyproject.toml README.md ./
COPY carspot ./carspot
RUN pip install --no-cache-dir ".${EXTRAS}"
# owned by the user the containers run as: `carspot models promote` writes CURRENT and new versions there
COPY --chown=nobody:nogroup models/CURRENT ./models/CURRENT
COPY --chown=nobody:nogroup models/versions ./models/versions
COPY models/detectors ./models/detectors
RUN chown nobody:nogroup ./models
USER nobody
ENTRYPOINT ["carspot"]
