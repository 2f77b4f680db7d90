#!/usr/bin/env bash
# Create .venv and install flamingo-eval with the versions its tests run against.
#
# open_flamingo's metadata pins torch==2.0.1, which does not install on current Python, so it is
# installed in a separate --no-deps step after its real runtime dependencies. torch and
# torchvision are pinned as a pair by requirements/constraints.txt: an unpinned install lets pip
# pick a torchvision whose compiled operators do not match torch.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip_install() { .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"; }

pip_install -c requirements/constraints.txt torch torchvision
pip_install -c requirements/constraints.txt -r requirements/runtime.txt
pip_install -c requirements/constraints.txt -e '.[test]'
pip_install --no-deps open-flamingo==2.0.1

# NLTK data for OK-VQA answer stemming (POS tagger and WordNet). nltk looks in
# <venv>/nltk_data by itself. Use a local copy when this checkout sits beside one, else download.
if [ ! -e .venv/nltk_data ]; then
  if [ -d ../shared/data/nltk_data ]; then
    ln -s "$(cd ../shared/data/nltk_data && pwd)" .venv/nltk_data
  else
    .venv/bin/python -m nltk.downloader -q -d .venv/nltk_data \
      averaged_perceptron_tagger_eng wordnet punkt_tab \
      || echo "setup: NLTK data download failed; OK-VQA runs will say how to get it" >&2
  fi
fi
.venv/bin/python -c "import open_flamingo, flamingo_eval" >/dev/null
echo "setup: done (.venv)"
