# tests/state.mk: crash safety and damaged or hostile state directories,
# against the real daemon/zonedd (issue 13).
TESTS += tests/e2e-crash.sh
dist_check_SCRIPTS += tests/e2e-crash.sh
TESTS += tests/e2e-state.sh
dist_check_SCRIPTS += tests/e2e-state.sh
