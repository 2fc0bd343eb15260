#!/usr/bin/env bash
# Mutation testing of the destructive decisions (operator/cleanup_operator/decisions.py) with mutmut,
# killed by their unit tests (tests/unit/test_decisions.py). mutmut maps mutants to tests by module
# path and expects the code under src/, so the run happens in a staging copy with that layout.
# Prints mutmut's results and exits non-zero when a mutant survives that is not listed (with its
# reason) in hack/mutation-survivors.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
STAGE=${MUTATION_STAGE:-$(mktemp -d /tmp/cleanup-mutation.XXXXXX)}
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/src" "$STAGE/tests/unit"
cp -r operator/cleanup_operator "$STAGE/src/"
cp tests/unit/test_decisions.py tests/unit/decisions.golden tests/unit/decisions-requests.golden "$STAGE/tests/unit/"
cat > "$STAGE/tests/conftest.py" <<'PY'
from hypothesis import HealthCheck, settings

settings.register_profile("ci", derandomize=True, max_examples=80, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
PY
cat > "$STAGE/setup.cfg" <<'CFG'
[mutmut]
source_paths = src
only_mutate = src/cleanup_operator/decisions.py
pytest_add_cli_args_test_selection = tests/unit/test_decisions.py
CFG
cd "$STAGE"
# The mutated copy wins over the editable install of the package.
mkdir -p "$STAGE/mutants/src"
export PYTHONPATH="$STAGE/mutants/src"
"$PY" -m mutmut run --max-children "${MUTATION_JOBS:-2}" >"$STAGE/run.log" 2>&1 || { tail -40 "$STAGE/run.log"; exit 1; }
"$PY" -m mutmut results --all true >"$STAGE/results.txt" 2>&1 || true
total=$(grep -c ': ' "$STAGE/results.txt" || true)
survivors=$(grep -E ': (survived|no tests|timeout|suspicious)' "$STAGE/results.txt" | sed 's/:.*//' | sort || true)
killed=$(grep -c ': killed' "$STAGE/results.txt" || true)
echo "mutation: $killed of $total mutants killed"
unexplained=""
for m in $survivors; do
  if ! grep -q "^$m " "$ROOT/hack/mutation-survivors.txt" 2>/dev/null; then
    unexplained="$unexplained $m"
  fi
done
if [ -n "$survivors" ]; then
  echo "survivors:"
  for m in $survivors; do
    echo "  $m  $(grep "^$m " "$ROOT/hack/mutation-survivors.txt" 2>/dev/null | cut -d' ' -f2- || true)"
  done
fi
if [ -n "$unexplained" ]; then
  echo "unexplained survivors:$unexplained"
  for m in $unexplained; do "$PY" -m mutmut show "$m" || true; done
  exit 1
fi
