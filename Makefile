# The two commands: `make run` and `make test`. Both create .venv when missing and install
# the project with the pinned versions in constraints.txt.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
KD     := $(VENV)/bin/kd
STAMP  := $(VENV)/.installed
WEB    := web/node_modules/.installed
YASGUI := kb/server/static/yasgui/yasgui.min.js
SWAGGER := kb/server/static/swagger/swagger-ui-bundle.js
# Headless Chromium for the browser tests of the site: Debian's package, never a browser
# download of its own (tests/test_site_browser.py drives it with playwright).
CHROMIUM ?= /usr/bin/chromium
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test install build site validate clean

run: install build site
	$(KD) serve

test: install $(CHROMIUM)
	$(PY) -m pytest

install: $(STAMP) $(WEB) $(YASGUI) $(SWAGGER)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml setup.py constraints.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

# Front-end packages from the npm registry, pinned by web/package-lock.json: the SPARQL editor
# (YASGUI and Swagger UI, copied into the server's static files) and the site's KaTeX and mermaid (copied
# into the site by `kd site build`). Nothing is loaded from a CDN at run time.
$(WEB): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB)

$(YASGUI): $(WEB)
	mkdir -p $(dir $(YASGUI))
	cp web/node_modules/@zazuko/yasgui/build/yasgui.min.js web/node_modules/@zazuko/yasgui/build/yasgui.min.css $(dir $(YASGUI))

# The JSON API's documentation page (/api/docs) uses Swagger UI from the same registry, so it
# works offline and no request leaves the server.
$(SWAGGER): $(WEB)
	mkdir -p $(dir $(SWAGGER))
	cp web/node_modules/swagger-ui-dist/swagger-ui-bundle.js web/node_modules/swagger-ui-dist/swagger-ui.css \
	   web/node_modules/swagger-ui-dist/favicon-32x32.png $(dir $(SWAGGER))

$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium

build: install
	$(KD) build

# The documentation site, generated from the store: build-site/html, served by `kd serve` at /.
site: build
	$(KD) site build

validate: build
	$(KD) validate

clean:
	rm -rf data build-site test-artifacts .pytest_cache kb/server/static/yasgui kb/server/static/swagger web/node_modules
