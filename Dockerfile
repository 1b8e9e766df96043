# One image for every service; the command picks the service (python -m <service>).
# The web app is built in a Node stage; crm serves its files from /app/web/dist.
FROM node:20-slim AS web
WORKDIR /web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web ./
RUN npm run build

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock ./
COPY libs ./libs
COPY services ./services
COPY sandbox ./sandbox
RUN uv sync --frozen --no-dev --all-packages
COPY --from=web /web/dist ./web/dist
ENV PATH="/app/.venv/bin:$PATH" WEB_DIST=/app/web/dist
RUN useradd --system --uid 10001 jggl
USER 10001
CMD ["python", "-m", "ingest"]
