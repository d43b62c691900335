package daemon

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportRules checks the package rules of docs/design.md: the domain imports only the
// standard library, the generated messages and the protobuf runtime; the adapters never
// import each other, server/ or internal/; server/ depends on no go-redis; only cmd/,
// internal/config and internal/daemon read flags.
func TestImportRules(t *testing.T) {
	const mod = "github.com/eventrelay/eventrelay/"
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, mod+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		imports[strings.TrimPrefix(f[0], mod)] = f[1:]
	}
	stdlib := func(p string) bool { return !strings.Contains(strings.SplitN(p, "/", 2)[0], ".") }
	adapters := []string{"relay/verify", "relay/redisstore", "relay/embedded", "relay/filter", "relay/push"}
	for _, imp := range imports["relay"] {
		if !stdlib(imp) && !strings.HasPrefix(imp, mod+"gen/") && !strings.HasPrefix(imp, "google.golang.org/protobuf/") {
			t.Errorf("relay (the domain) imports %s", imp)
		}
	}
	for _, a := range adapters {
		for _, imp := range imports[a] {
			p := strings.TrimPrefix(imp, mod)
			for _, other := range adapters {
				if p == other && other != a {
					t.Errorf("%s imports the adapter %s", a, other)
				}
			}
			if p == "server" || strings.HasPrefix(p, "internal/") || strings.HasPrefix(p, "cmd/") {
				t.Errorf("%s imports %s", a, p)
			}
		}
	}
	for pkg, imps := range imports {
		for _, imp := range imps {
			if imp == "flag" && !strings.HasPrefix(pkg, "cmd/") && pkg != "internal/config" && pkg != "internal/daemon" {
				t.Errorf("%s reads flags", pkg)
			}
		}
	}
	deps, err := exec.Command("go", "list", "-deps", mod+"server").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	if strings.Contains(string(deps), "github.com/redis/go-redis") {
		t.Error("server/ depends on go-redis")
	}
}
