# Shared settings for the scripts: sourced, not run.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/efen/target}"
export EFEN_BIN="$CARGO_TARGET_DIR/release/efen"
# The Python environment for training/ and the Python-side tests, outside the clone and reused.
export EFEN_VENV="${EFEN_VENV:-$HOME/.cache/efen/venv}"
