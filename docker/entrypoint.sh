#!/bin/sh
# Entry point of the web and worker images. For a worker that runs student code in sibling
# containers of the host's engine (GRADER_SANDBOX=docker with the socket mounted), every path it
# binds into a sandbox must exist at the same path on the host. GRADER_HOST_DIR names a host
# folder mounted at its own path; here it gets
#   work/            the sandbox work folder (TMPDIR: grade() and the sandbox make their run
#                    folders with tempfile, so they land here)
#   code/<hash>/     a copy of the grader package (the runner code is bound from it) and of
#                    hidden_tests/, imported from there (PYTHONPATH) so the paths agree
#   hidden/          the hidden data (GRADER_HOME=GRADER_HOST_DIR), filled by `grader build-tests`
# Without GRADER_HOST_DIR it only runs the command.
set -eu

if [ -n "${GRADER_HOST_DIR:-}" ]; then
    case "$GRADER_HOST_DIR" in
        /*) ;;
        *) echo "entrypoint: GRADER_HOST_DIR must be an absolute path, not '$GRADER_HOST_DIR'" >&2; exit 2 ;;
    esac
    src=/opt/cnn-grader
    hash=$(cd "$src" && find grader hidden_tests -type f ! -name '*.pyc' -print0 | sort -z \
        | xargs -0 sha256sum | sha256sum | cut -c1-16)
    code="$GRADER_HOST_DIR/code/$hash"
    mkdir -p "$GRADER_HOST_DIR/work" "$GRADER_HOST_DIR/code"
    chmod 0755 "$GRADER_HOST_DIR" "$GRADER_HOST_DIR/code"
    chmod 0711 "$GRADER_HOST_DIR/work"
    if [ ! -d "$code" ]; then
        # Several workers may start at once: copy to a private folder, then rename into place.
        tmp=$(mktemp -d "$GRADER_HOST_DIR/code/.partial.XXXXXX")
        cp -R "$src/grader" "$src/hidden_tests" "$tmp/"
        find "$tmp" -name __pycache__ -prune -exec rm -rf {} +
        chmod -R a+rX,go-w "$tmp"
        mv -T "$tmp" "$code" 2>/dev/null || rm -rf "$tmp"  # lost the race: theirs is the same
    fi
    export TMPDIR="$GRADER_HOST_DIR/work"
    export PYTHONPATH="$code${PYTHONPATH:+:$PYTHONPATH}"
fi

exec "$@"
