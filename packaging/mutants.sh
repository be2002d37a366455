#!/usr/bin/env bash
# Mutation testing of picker's pure modules: cargo-mutants changes one thing at a time in a
# module (a `<` for a `<=`, a constant, a function body) and runs the unit tests; a change no
# test notices ("missed") is behaviour the tests do not pin. Unit tests only: the pure
# modules are meant to be pinned by their own table-driven tests, and the lib tests take
# seconds where the integration tests take minutes. `--cargo-arg=--lib` and not `-- --lib`:
# the latter still builds every integration test for each mutant (about a minute each here).
#
#   packaging/mutants.sh                      every module in .cargo/mutants-modules.txt
#   packaging/mutants.sh src/camera/pace.rs   the modules named
#   packaging/mutants.sh --changed-since REV  the listed modules that differ from REV (CI)
#   --max-minutes N: stop (and fail) after N minutes, the source put back; CI's time bound.
#   --in-place: mutate this tree instead of a copy, one mutant at a time, reusing target/'s
#   build (CI, after the tests built it); never in a tree being edited. cargo-mutants puts
#   each file back after testing its mutant, and on Ctrl-C.
#
# Installs cargo-mutants (pinned: VERSION below) under /var/cache/picker-build/tools when
# missing. Mutants equivalent to the original code are excluded in .cargo/mutants.toml, each
# with its reason. Output: target/mutants/mutants.out (missed.txt, caught.txt, ...) and a
# table per module.
# Exits non-zero on any missed or timed-out mutant, or when cargo-mutants itself fails.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=27.1.0
TOOLS=${PICKER_TOOLS:-/var/cache/picker-build/tools}
root="$TOOLS/cargo-mutants-$VERSION"
bin="$root/bin/cargo-mutants"
# Sized for a 2-core machine: two mutants build and test at once.
JOBS=${PICKER_MUTANTS_JOBS:-2}
# Per-mutant test timeout (s): the lib tests take ~10 s on a loaded 2-core machine; a mutant
# that loops for ever (a `+=` turned `-=` in a loop bound) is cut off well after that.
TIMEOUT=${PICKER_MUTANTS_TIMEOUT:-120}

usage() {
    echo "usage: packaging/mutants.sh [--changed-since REV] [--in-place] [--max-minutes N] [src/MODULE.rs ...]" >&2
    exit 2
}

since=""
in_place=0
max_minutes=0
modules=()
while (($#)); do
    case $1 in
        --changed-since) [[ $# -ge 2 ]] || usage; since=$2; shift 2 ;;
        --in-place) in_place=1; shift ;;
        --max-minutes) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || usage; max_minutes=$2; shift 2 ;;
        -h | --help) usage ;;
        -*) echo "mutants.sh: unknown option $1" >&2; usage ;;
        *) modules+=("$1"); shift ;;
    esac
done

if ((${#modules[@]} == 0)); then
    # The list: one path a line; `#` starts a comment.
    mapfile -t modules < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' .cargo/mutants-modules.txt)
fi
for m in "${modules[@]}"; do
    [[ -f $m ]] || { echo "mutants.sh: no such module: $m" >&2; exit 2; }
done

if [[ -n $since ]]; then
    git rev-parse --verify --quiet "$since^{commit}" >/dev/null ||
        { echo "mutants.sh: --changed-since: no such revision: $since" >&2; exit 2; }
    mapfile -t changed < <(git diff --name-only "$since" -- "${modules[@]}")
    echo "mutants.sh: pure modules changed since $(git rev-parse --short "$since"): ${changed[*]:-none}"
    modules=("${changed[@]}")
    ((${#modules[@]})) || exit 0
fi

if [[ ! -x $bin ]] || [[ $("$bin" mutants --version) != "cargo-mutants $VERSION" ]]; then
    echo "mutants.sh: installing cargo-mutants $VERSION into $root" >&2
    mkdir -p "$TOOLS"
    cargo install --locked --quiet cargo-mutants --version "$VERSION" --root "$root"
fi
installed=$("$bin" mutants --version)
[[ $installed == "cargo-mutants $VERSION" ]] ||
    { echo "mutants.sh: $bin is $installed, want $VERSION" >&2; exit 1; }

# One cargo-mutants run over every module (the dependencies built once per copy), then
# the figures per module: each line of cargo-mutants' outcome lists starts with the file.
out=target/mutants
mkdir -p "$out"
files=()
for m in "${modules[@]}"; do files+=(--file "$m"); done
# The unit tests of the threaded, timed parts (the fake camera pipeline, the client deadlines,
# the encode pool) pin none of the pure modules, and under load they fail now and then: a
# baseline they fail stops the run, a mutant they fail would be counted caught.
skip=(--skip camera::fake:: --skip http::deadline:: --skip encode_pool::)
# A copy per job (each builds the dependencies once), or this tree and its target/.
where=(--jobs "$JOBS")
((in_place)) && where=(--in-place)
start=$SECONDS
# A mutant that fails a property test (config.rs, http/route.rs) makes proptest save the
# failing seed under proptest-regressions/ in the tree it ran in: in place, this one. Those
# are the mutants' failures, not the code's, so a directory the run created is removed after.
seeds_before=0
[[ -e proptest-regressions ]] && seeds_before=1
echo "mutants.sh: cargo-mutants $VERSION over: ${modules[*]}"
rc=0
# A time bound: SIGINT, on which cargo-mutants puts the mutated file back and stops.
bound=()
((max_minutes)) && bound=(timeout -s INT -k 120 "${max_minutes}m")
# `cargo-mutants mutants`: the binary called the way cargo calls a subcommand. After `--`,
# cargo test's arguments; after the second `--`, the test binary's.
"${bound[@]}" "$bin" mutants "${files[@]}" "${where[@]}" --timeout "$TIMEOUT" --no-shuffle \
    --cargo-arg=--lib --output "$out" -- -- "${skip[@]}" || rc=$?
((in_place && !seeds_before)) && rm -rf proptest-regressions
o=$out/mutants.out
count() { if [[ -f $o/$2 ]]; then grep -c "^$1:" "$o/$2" || true; else echo 0; fi; }
printf '%-32s %7s %7s %7s %8s %8s\n' module caught missed timeout unviable score
for m in "${modules[@]}"; do
    c=$(count "$m" caught.txt) x=$(count "$m" missed.txt) t=$(count "$m" timeout.txt)
    u=$(count "$m" unviable.txt)
    score=n/a
    ((c + x + t)) && score="$((100 * c / (c + x + t)))%"
    printf '%-32s %7s %7s %7s %8s %8s\n' "$m" "$c" "$x" "$t" "$u" "$score"
done
echo "mutants.sh: $((SECONDS - start)) s, cargo-mutants exit $rc"
if ((rc == 124)); then
    echo "mutants.sh: stopped at the time bound of $max_minutes min: not every mutant was tested" >&2
    exit 1
fi
if ((rc != 0)); then
    echo "mutants.sh: missed or timed-out mutants (exit 2/3) or a failed run; missed:" >&2
    cat "$o/missed.txt" "$o/timeout.txt" >&2 2>/dev/null || true
    exit 1
fi
