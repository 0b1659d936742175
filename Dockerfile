# syntax=docker/dockerfile:1
# The image of `tripwire worker` and `tripwire api`: build a wheel, install it in a slim
# runtime as a non-root user. Flows are added by a derived image (COPY flows/ /flows/) or
# mounted, and named on the command line: `tripwire worker /flows`.
ARG PYTHON=3.11

FROM python:${PYTHON}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY triggers/ triggers/
COPY sensors/ sensors/
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[aws,gcp,k8s,sources]"

FROM python:${PYTHON}-slim
# Graphviz's dot draws the event-flow page (/flow); without it the page shows a table.
RUN apt-get update \
    && apt-get install -y --no-install-recommends graphviz \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin tripwire
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "tripwire[aws,gcp,k8s,sources]" \
    && rm -rf /wheels
USER 10001
WORKDIR /home/tripwire
# State the engine writes locally (run folders, logs); mount a volume here with a read-only root.
ENV TRIPWIRE_HOME=/home/tripwire/state PYTHONUNBUFFERED=1
VOLUME ["/home/tripwire/state"]
EXPOSE 8080
ENTRYPOINT ["tripwire"]
CMD ["worker"]
