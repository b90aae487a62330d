FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY connectors ./connectors
RUN pip install --no-cache-dir '.[all]'
COPY functions ./functions
COPY config ./config
ENV PYTHONUNBUFFERED=1
ENTRYPOINT ["hub"]
CMD ["run", "config/stack.yaml"]
