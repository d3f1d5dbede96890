# syntax=docker/dockerfile:1.7
# finserve training and evaluation image: the serving image (same dependencies: evaluation drives
# the serving pipeline) plus the training configs, run from /app so the documented relative path
# `finserve train --config training_jobs/configs/default.yaml` works. Built on top of the serving
# image, so nothing is installed twice:
#   docker build -f docker/training.Dockerfile --build-arg SERVING_IMAGE=finserve-serving:0.1.0 -t finserve-training:0.1.0 .
#   docker build -f docker/training.Dockerfile --build-arg SERVING_IMAGE=finserve-serving-gpu:0.1.0 -t finserve-training-gpu:0.1.0 .
# checkov:skip=CKV_DOCKER_2: a batch Job image: Kubernetes tracks the Job's completion, not health
# checkov:skip=CKV_DOCKER_7: FROM takes an ARG whose default pins a tag (the serving image of this release)
ARG SERVING_IMAGE=finserve-serving:0.1.0
FROM ${SERVING_IMAGE}
WORKDIR /app
COPY --chown=10001:10001 training_jobs/ training_jobs/
USER 10001:10001
CMD ["finserve", "train", "--config", "training_jobs/configs/default.yaml"]
