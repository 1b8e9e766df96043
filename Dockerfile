# One image for every service; the command picks the service (python -m <service>).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
COPY sandbox ./sandbox
RUN uv sync --frozen --no-dev --all-packages
ENV PATH="/app/.venv/bin:$PATH"
RUN useradd --system --uid 10001 jggl
USER 10001
CMD ["python", "-m", "ingest"]
