# AffectVLM app for GPU machines:
#   docker build -t affectvlm .
#   docker run --gpus all -p 8501:8501 -v affectvlm-work:/data/workspace -v affectvlm-weights:/data/weights affectvlm
#   (--build-arg AFFECTVLM_MODELS="SPEC ..." bakes weights in: see below)
# requirements.txt pinned by constraints.txt, then a non-editable install (tests/test_install.py checks such an install finds its model).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VTK_DEFAULT_OPENGL_WINDOW=vtkEGLRenderWindow \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    AFFECTVLM_WORKSPACE_ROOTS=/data/workspace \
    HF_HOME=/data/weights/hf \
    XDG_CACHE_HOME=/data/weights/cache

# GL/EGL libraries that headless pyvista/VTK needs (same list as .ci/run), curl for the health check.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libegl1 libegl-mesa0 libgl1 libgl1-mesa-dri libglx-mesa0 libgomp1 libxrender1 curl \
 && rm -rf /var/lib/apt/lists/*

# The code stays root's (the app's user cannot change what it runs); the user owns only its data volumes.
RUN useradd --create-home --uid 1000 affectvlm \
 && mkdir -p /app /data/workspace /data/weights \
 && chown -R affectvlm:affectvlm /data
WORKDIR /app

# Dependencies first (cached layer): pip resolves torch + torchvision together, i.e. the CUDA build, at the versions
# CI last passed with (constraints.txt).
COPY requirements.txt constraints.txt ./
RUN python -m pip install -r requirements.txt -c constraints.txt

COPY . .
RUN python -m pip install --no-deps .

USER affectvlm
# Weights baked in for offline use: model specs (space-separated) fetched at build time with
# `affectvlm download` into the Hugging Face cache under HF_HOME, e.g.
#   docker build --build-arg AFFECTVLM_MODELS="ViT-B-32:openai hf-hub:org/repo" -t affectvlm .
#   docker run -e HF_HUB_OFFLINE=1 ... affectvlm        (`docker run ... affectvlm affectvlm models` lists them)
# A new named volume on /data/weights starts with them; a bind mount there hides them.
ARG AFFECTVLM_MODELS=""
RUN if [ -n "$AFFECTVLM_MODELS" ]; then affectvlm download --no-progress $AFFECTVLM_MODELS; fi
VOLUME ["/data/workspace", "/data/weights"]
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8501/_stcore/health || exit 1

CMD ["streamlit", "run", "app.py", "--server.address=0.0.0.0", "--server.port=8501", \
     "--server.headless=true", "--browser.gatherUsageStats=false", "--server.fileWatcherType=none"]
