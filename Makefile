# The two commands: `make run` and `make test`. Both create .venv when missing and install
# the project with the pinned versions in constraints.txt.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
KD     := $(VENV)/bin/kd
STAMP  := $(VENV)/.installed
YASGUI := kb/server/static/yasgui/yasgui.min.js

.PHONY: run test install build validate clean

run: install build
	$(KD) serve

test: install
	$(PY) -m pytest

install: $(STAMP) $(YASGUI)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml constraints.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

# The SPARQL editor (YASGUI) comes from the npm registry, pinned by web/package-lock.json,
# and is served from our own static files: no CDN at run time.
$(YASGUI): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p $(dir $(YASGUI))
	cp web/node_modules/@zazuko/yasgui/build/yasgui.min.js web/node_modules/@zazuko/yasgui/build/yasgui.min.css $(dir $(YASGUI))

build: install
	$(KD) build

validate: build
	$(KD) validate

clean:
	rm -rf data build-site .pytest_cache kb/server/static/yasgui web/node_modules
