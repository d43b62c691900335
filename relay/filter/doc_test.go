package filter_test

import (
	"os"
	"strings"
	"testing"

	"github.com/eventrelay/eventrelay/relay/filter"
)

// TestDocExamples compiles every example of docs/api.md's Filters section (the ```cel
// blocks; examples are separated by blank lines).
func TestDocExamples(t *testing.T) {
	b, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, block := range strings.Split(string(b), "```cel\n")[1:] {
		block, _, _ = strings.Cut(block, "```")
		for _, expr := range strings.Split(block, "\n\n") {
			if strings.TrimSpace(expr) == "" {
				continue
			}
			n++
			if _, err := filter.Compile(expr); err != nil {
				t.Errorf("docs/api.md example does not compile:\n%s\n%v", expr, err)
			}
		}
	}
	if n < 6 {
		t.Errorf("%d examples in docs/api.md, want the Stripe, GitHub and Shopify ones", n)
	}
}
