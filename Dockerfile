# parley's web chat (and its HTTP API) in a container: the wheel built from this folder, the embedded model's
# weights, bubblewrap for run_python's sandbox. Data (SQLite store, sign-in secret, conversations' files) in /data.
#   docker build -t parley .
#   docker run -p 8000:8000 -v parley-data:/data parley        # then: docker exec -it CONTAINER parley users add NAME
# With PostgreSQL and more than one replica: deploy/compose.yaml (docs/deployment.md).
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN pip install --no-cache-dir build==1.2.2.post1 \
    && python -m build --wheel --outdir /wheels .

FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl \
    && parley model install \
    && rm -rf /wheels /root/.cache
RUN useradd --create-home --uid 10001 parley \
    && mkdir /data /work \
    && chown parley:parley /data /work
USER parley
WORKDIR /work
ENV PARLEY_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/', timeout=4)"
# Serving on every address needs a user: create one first (`parley users add NAME`), or the server refuses to start.
CMD ["parley", "ui", "--host", "0.0.0.0", "--port", "8000"]
