# CarSpot worker/ingest image. Detector weights are mounted (see docker-compose.yml), never downloaded; the
# released brand model is part of the image. For a GPU worker: `docker build --build-arg EXTRAS="[gpu]" .`
# (TensorFlow with CUDA; the worker then serves the brand model on the GPU, CARSPOT_CLASSIFIER_RUNTIME=auto).
FROM python:3.11-slim
ARG EXTRAS=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 CARSPOT_MODEL_DIR=/app/models
WORKDIR /app
COPY pyproject.toml README.md ./
COPY carspot ./carspot
RUN pip install --no-cache-dir ".${EXTRAS}"
# owned by the user the containers run as: `carspot models promote` writes CURRENT and new versions there
COPY --chown=nobody:nogroup models/CURRENT ./models/CURRENT
COPY --chown=nobody:nogroup models/versions ./models/versions
RUN chown nobody:nogroup ./models
USER nobody
ENTRYPOINT ["carspot"]
