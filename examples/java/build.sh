#!/usr/bin/env bash
# Build the eventrelay Java example with Debian's protoc, grpc-java plugin and jars only
# (no Maven, no network):
#
#   1. protoc --java_out / --grpc-java_out  proto/eventrelay/v1 + vendored google/api
#        -> examples/java/build/gen            (generated, never committed)
#   2. javac -cp "/usr/share/java/*"  build/gen + src
#        -> examples/java/build/classes
#
# It also writes examples/java/build/classpath: the classes plus just the runtime jars (the whole
# /usr/share/java also works, but drags in several SLF4J bindings that warn on stderr). Run with:
#   java -cp "$(cat examples/java/build/classpath)" io.eventrelay.example.GroupConsumer --help
#
# Works from any directory. Environment overrides: PROTOC, GRPC_JAVA_PLUGIN, JAVA_LIBS.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
proto_dir="$root/proto"
gen_dir="$here/build/gen"
classes_dir="$here/build/classes"
java_libs="${JAVA_LIBS:-/usr/share/java}"
# libguava-java: grpc-java needs Guava, but Debian's libgrpc-java does not depend on it.
# libgeronimo-annotation-1.3-spec-java: javax.annotation.Generated, which the grpc-java plugin
# puts on the generated stubs and JDK 11+ no longer ships (compile time only).
apt_fix="apt-get install -y libgrpc-java libnetty-java libperfmark-java libprotobuf-java libguava-java libgeronimo-annotation-1.3-spec-java protobuf-compiler protobuf-compiler-grpc-java-plugin"

die() {
  echo "build.sh: $*" >&2
  echo "build.sh: fix with: $apt_fix" >&2
  exit 1
}

# --- tools ---------------------------------------------------------------------------
protoc="${PROTOC:-$(command -v protoc || true)}"
[ -n "$protoc" ] && [ -x "$protoc" ] || die "protoc not found (package protobuf-compiler)"

plugin="${GRPC_JAVA_PLUGIN:-}"
if [ -z "$plugin" ]; then
  for p in /usr/bin/grpc_java_plugin /usr/bin/protoc-gen-grpc-java \
           "$(command -v grpc_java_plugin || true)" "$(command -v protoc-gen-grpc-java || true)"; do
    if [ -n "$p" ] && [ -x "$p" ]; then plugin="$p"; break; fi
  done
fi
[ -n "$plugin" ] && [ -x "$plugin" ] || die "grpc-java protoc plugin not found (package protobuf-compiler-grpc-java-plugin)"

command -v javac >/dev/null || die "javac not found (install a JDK, e.g. apt-get install -y default-jdk-headless)"

# Well-known types (google/protobuf/*.proto) ship with protoc in /usr/include.
wkt_include=""
for d in /usr/include /usr/local/include; do
  if [ -f "$d/google/protobuf/timestamp.proto" ]; then wkt_include="$d"; break; fi
done
[ -n "$wkt_include" ] || die "google/protobuf/timestamp.proto not found under /usr/include (package libprotobuf-dev / protobuf-compiler)"

# Runtime jars: protobuf-java, grpc-java over Netty, and what they need.
runtime_jars=(
  protobuf grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
  netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-common netty-handler
  netty-resolver netty-transport perfmark-api guava error_prone_annotations jsr305
)
classpath="$classes_dir"
for jar in "${runtime_jars[@]}"; do
  [ -f "$java_libs/$jar.jar" ] || die "$java_libs/$jar.jar not found"
  classpath+=":$java_libs/$jar.jar"
done
[ -f "$java_libs/geronimo-annotation-1.3-spec.jar" ] ||
  die "$java_libs/geronimo-annotation-1.3-spec.jar not found (javax.annotation.Generated, used by the generated gRPC stubs)"

# --- generate ------------------------------------------------------------------------
rm -rf "$gen_dir" "$classes_dir"
mkdir -p "$gen_dir" "$classes_dir"

protos=(
  "$proto_dir"/eventrelay/v1/*.proto
  "$proto_dir"/google/api/annotations.proto
  "$proto_dir"/google/api/http.proto
  "$proto_dir"/google/api/httpbody.proto
)
echo "build.sh: $(basename "$protoc") ($("$protoc" --version)) + $plugin -> ${gen_dir#"$root"/}"
"$protoc" \
  -I "$proto_dir" -I "$wkt_include" \
  --plugin=protoc-gen-grpc-java="$plugin" \
  --java_out="$gen_dir" \
  --grpc-java_out="$gen_dir" \
  "${protos[@]}"

# --- compile -------------------------------------------------------------------------
mapfile -t sources < <(find "$gen_dir" "$here/src" -name '*.java' | sort)
echo "build.sh: javac ${#sources[@]} files -> ${classes_dir#"$root"/}"
# -nowarn / -Xlint:none: generated code uses deprecated protobuf APIs; that is not ours to fix.
javac -nowarn -Xlint:none -encoding UTF-8 --release 11 \
  -cp "$java_libs/*" \
  -d "$classes_dir" \
  "${sources[@]}"

echo "$classpath" > "$here/build/classpath"
echo "build.sh: ok"
echo "build.sh: run: java -cp \"\$(cat ${here}/build/classpath)\" io.eventrelay.example.GroupConsumer --help"
