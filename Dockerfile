# sweeper on CPUs. Build and try it:
#   docker build -t sweeper .
#   docker run --rm sweeper demo
#   docker run --rm -v ~/.keras:/root/.keras -v "$PWD":/work sweeper run cats.yaml
# Keras' weights folder is a volume: mount one that holds the weight files (or lets Keras keep
# what it downloads); /work, the working folder, is where specs, data and results are.
FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY sweeper ./sweeper
COPY search_spaces ./search_spaces
RUN pip install --no-cache-dir . && rm -rf /src

VOLUME ["/root/.keras"]
WORKDIR /work
ENTRYPOINT ["sweeper"]
CMD ["--help"]
