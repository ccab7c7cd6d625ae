# One image for every service: the command picks it (`api`, `scheduler`, `fetcher --broker sim`,
# `ledger`, `db upgrade`, `topics create`, ...). docker-compose.yml runs the whole stack from it.
#
#   docker build -t portfolio-sync .
#   docker run --rm -p 8000:8000 portfolio-sync            # the embedded demo, no configuration
#   docker run --rm portfolio-sync keys generate           # a key for CREDENTIALS_KEYS

FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src

# Dependencies first, from pyproject.toml and constraints.txt alone: editing the code does not
# invalidate this layer, only a change of dependencies or pins does.
COPY pyproject.toml constraints.txt ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -c constraints.txt -r /tmp/requirements.txt

# Then the package itself (a regular install, not editable: the source tree stays in this stage).
# README.m[d]: pyproject.toml names it as the long description; the glob keeps the build working
# if it is absent.
COPY pyproject.toml README.m[d] ./
COPY shared/ shared/
COPY services/ services/
RUN pip install -c constraints.txt .


FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin app
COPY --from=build /opt/venv /opt/venv

# Numeric, so that a runtime can check "runAsNonRoot" without reading /etc/passwd.
USER 10001
# A relative SQLite DATABASE_URL (the default one) resolves here, in a directory the user owns.
WORKDIR /home/app
EXPOSE 8000

ENTRYPOINT ["portfolio-sync"]
CMD ["demo", "--host", "0.0.0.0"]
