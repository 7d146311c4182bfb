# `make dev` and `make test` are the only two commands a newcomer needs.
PORT ?= 8787
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: dev test check check-supabase types install clean

$(STAMP): pyproject.toml
	@test -n "$(PY)" || { echo "python3.11 not found; set PY=/path/to/python3.11"; exit 1; }
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -q --upgrade pip
	$(BIN)/python -m pip install -q -q -e '.[dev]' > $(VENV)/install.log 2>&1 || { cat $(VENV)/install.log; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

dev: $(STAMP)
	@$(BIN)/tollbooth dev --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# lint + import order, types, and the layout rule (fast: no database)
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/core/test_layout.py \
		tests/core/test_code_rules.py
	$(BIN)/python -m lib.local.supabase_check

# the real Supabase CLI (npm `supabase@3`, cached in .tollbooth/npm) against a fresh database
check-supabase: $(STAMP)
	$(BIN)/python -m lib.local.supabase_check

# regenerate supabase/types/database.ts with `supabase gen types typescript` (commit it)
types: $(STAMP)
	$(BIN)/python -m lib.local.supabase_check --write-types

clean:
	rm -rf $(VENV) .tollbooth
