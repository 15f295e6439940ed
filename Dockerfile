# CPU image of the server with the bundled default models and portrait.
#   docker build -t spacelive . && docker run -p 8000:8000 spacelive
FROM python:3.11-slim-bookworm
WORKDIR /app
COPY . /app
RUN python -m venv /app/.venv \
 && /app/.venv/bin/pip install --no-cache-dir . \
 && /app/.venv/bin/pip install --no-cache-dir --no-deps mediapipe==0.10.21
EXPOSE 8000
CMD ["/app/.venv/bin/spacelive", "serve", "--host", "0.0.0.0", "--port", "8000"]
