package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/internal/e2e"
)

// consoleConfig: two sources, a console token for everything, one for orders only, and an API
// token without console access.
const consoleConfig = `sources:
` + `  - name: orders
    provider: hmac
    secrets: ["` + e2e.Secret + `"]
    partitions: 2
  - name: billing
    provider: hmac
    secrets: ["` + e2e.Secret + `"]
auth:
  tokens:
    - {name: ops, token: ops-token, publish: true, console: true}
    - {name: orders-viewer, token: viewer-token, sources: [orders], console: true}
    - {name: api-only, token: api-token}
`

// browser starts Debian's chromium (headless) for t: skipped when it is not installed, unless
// RELAY_REQUIRE_BROWSER=1 (as .ci/run sets), then a failure.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("RELAY_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium is not installed (apt-get install -y chromium)")
		}
		t.Skip("chromium is not installed")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 900), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// page drives one browser tab for a test, failing it with what it was doing.
type page struct {
	t     *testing.T
	ctx   context.Context
	admin string
	shots string
}

func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, e2e.Wait)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
}

// open shows the console page at hash (e.g. "#/live").
func (p *page) open(hash string) {
	p.t.Helper()
	p.do("open "+hash, chromedp.Navigate("http://"+p.admin+"/"+hash))
}

// wait waits until the JavaScript expression is true, within timeout.
func (p *page) wait(what, expr string, timeout time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(timeout))); err != nil {
		body, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.querySelector('main').innerText`))
		p.t.Fatalf("waiting for %s: %v\npage:\n%s", what, err, body)
	}
}

// has reports whether the element matching css contains text.
func has(css, text string) string {
	return fmt.Sprintf(`(document.querySelector(%q)?.textContent || '').includes(%q)`, css, text)
}

// eval returns the value of the JavaScript expression, as a string.
func (p *page) eval(expr string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[string]("String("+expr+")"))
	if err != nil {
		p.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// shot saves a screenshot of the whole page as <name>.png in the screenshot directory.
func (p *page) shot(name string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(p.shots, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// signIn enters token in the console's sign-in form.
func (p *page) signIn(token string) {
	p.t.Helper()
	p.do("sign in", chromedp.WaitVisible(chromedp.ID("token")), chromedp.SetValue(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`.login button[type=submit]`)))
}

// postWrong posts body to source signed with a wrong secret and requires a 401.
func postWrong(t *testing.T, addr, source string, body []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/v1/webhooks/"+source, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Signature", e2e.Sign("not-the-secret", body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d, want 401", resp.StatusCode)
	}
}

func jsonQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

type tokenCreds string

func (c tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(c)}, nil
}
func (tokenCreds) RequireTransportSecurity() bool { return false }

// deadLetter makes id a dead letter of group g on orders: one delivery, never acknowledged.
func deadLetter(t *testing.T, r *e2e.Relayd, id string) {
	t.Helper()
	conn, err := grpc.NewClient(r.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(tokenCreds("ops-token")))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := eventrelayv1.NewEventServiceClient(conn)
	s := e2e.Subscribe(t, c, &eventrelayv1.SubscribeRequest{Sources: []string{"orders"}, Group: "g", Consumer: "c1",
		AckDeadline: durationpb.New(200 * time.Millisecond), MaxDeliveryAttempts: 1, HeartbeatInterval: durationpb.New(time.Second),
		Start: eventrelayv1.StartPosition_START_POSITION_LATEST})
	s.Ready(t)
	e2e.MustPost(t, r.HTTP, "orders", id, "order.failed", 1)
	if d := s.Next(t); d.Event.Id != id {
		t.Fatalf("group delivered %s, want %s", d.Event.Id, id)
	}
	e2e.Eventually(t, id+" dead-lettered", func() bool {
		resp, err := c.ListEvents(context.Background(), &eventrelayv1.ListEventsRequest{Source: "orders", DeadLetters: true, Group: "g"})
		return err == nil && len(resp.Deliveries) == 1
	})
	s.Close()
}

// TestConsoleInBrowser drives the web console in a real browser against a relayd process:
// sign-in, overview, live tail (within 2 s of the 2xx, pause and resume without loss), an
// event's payload and verification evidence, a refused request with reason "signature", a
// dead letter redriven from the page, a test webhook sent by relayd, and a token scoped to
// one source seeing only that source. Screenshots go to $RELAY_SCREENSHOTS (docs/console
// with make screenshots), else to a temporary directory.
func TestConsoleInBrowser(t *testing.T) {
	e2e.Slow(t)
	ctx := browser(t)
	r := e2e.Start(t, consoleConfig)
	shots := os.Getenv("RELAY_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	p := &page{t: t, ctx: ctx, admin: r.Admin, shots: shots}
	for i := range 12 {
		e2e.MustPost(t, r.HTTP, "orders", fmt.Sprintf("evt_seed_%02d", i), []string{"order.created", "order.paid", "invoice.sent"}[i%3], i)
	}
	e2e.MustPost(t, r.HTTP, "billing", "evt_bill_1", "invoice.paid", 1)

	// A token without console: true is refused; ops is let in.
	p.open("")
	p.signIn("api-token")
	p.wait("the refusal of a token without console access", has("main", "may not open the console"), e2e.Wait)
	p.signIn("ops-token")
	p.wait("the overview", `document.querySelectorAll('article[data-source]').length === 2`, e2e.Wait)

	t.Run("live tail", func(t *testing.T) {
		p.t = t
		p.open("#/live")
		p.wait("the live tail connected", has("#live-status", "Live"), e2e.Wait)
		start := time.Now()
		e2e.MustPost(t, r.HTTP, "orders", "evt_live_1", "order.created", 1)
		posted := time.Now()
		p.wait("evt_live_1 in the live tail within 2 s of its 2xx", has("#live", "evt_live_1"), 2*time.Second)
		t.Logf("in the live tail %v after the 2xx (post took %v)", time.Since(posted).Round(time.Millisecond), posted.Sub(start).Round(time.Millisecond))

		p.do("pause", chromedp.Click(chromedp.ID("live-toggle")))
		p.wait("paused", has("#live-status", "Paused"), e2e.Wait)
		// Three while paused: on resuming they come from history, in one batch (max_batch).
		for i := 1; i <= 3; i++ {
			e2e.MustPost(t, r.HTTP, "billing", fmt.Sprintf("evt_while_paused_%d", i), "invoice.paid", 1+i)
		}
		if p.eval(has("#live", "evt_while_paused")) == "true" {
			t.Fatal("an event appeared while paused")
		}
		p.do("resume", chromedp.Click(chromedp.ID("live-toggle")))
		p.wait("the events posted while paused, after resuming", has("#live", "evt_while_paused_3"), e2e.Wait)
		e2e.MustPost(t, r.HTTP, "orders", "evt_live_2", "order.paid", 5)
		p.wait("evt_live_2 after resuming", has("#live", "evt_live_2"), e2e.Wait)
		// Newest first, each event once.
		got := p.eval(`Array.from(document.querySelectorAll('#live tbody tr code')).map((c) => c.textContent).join(',')`)
		if want := "evt_live_2,evt_while_paused_3,evt_while_paused_2,evt_while_paused_1,evt_live_1"; got != want {
			t.Errorf("live tail rows %s, want %s", got, want)
		}
		p.shot("live-tail")
	})

	t.Run("event detail", func(t *testing.T) {
		p.t = t
		p.open("#/events?source=orders&type=invoice.*")
		p.wait("invoice events listed", has("#events", "evt_seed_11"), e2e.Wait)
		if p.eval(has("#events", "order.created")) == "true" {
			t.Error("the type filter invoice.* listed an order.created event")
		}
		p.shot("events")
		p.do("open evt_seed_11", chromedp.Click(chromedp.CSS(`#events a[href*="evt_seed_11"]`)))
		p.wait("the payload", has("#payload", `"evt_seed_11"`), e2e.Wait)
		p.wait("the verification evidence", has("#verification", "hmac-sha256"), e2e.Wait)
		if got := p.eval(`document.querySelector('#verification').textContent`); !strings.Contains(got, "secrets[0]") {
			t.Errorf("verification shows %q, want the matched key secrets[0]", got)
		}
		if c := p.eval(`document.querySelector('#cursor').textContent`); c == "" {
			t.Error("no cursor shown")
		}
		p.shot("event-detail")
		p.do("raw bytes", chromedp.Click(chromedp.CSS(`.tabs button:last-child`)))
		p.wait("the hex dump", has("#payload", "00000000  7b 22 69 64"), e2e.Wait) // {"id
	})

	t.Run("webhook content is shown as text, never run", func(t *testing.T) {
		p.t = t
		evil := `<img src=x onerror="window.pwned=1">`
		body := []byte(`{"id":"evt_xss","type":` + jsonQuote(evil) + `,"subject":"<script>window.pwned=2</script>","html":"<b>bold</b>"}`)
		if code, err := e2e.Post(context.Background(), r.HTTP, "orders", body); err != nil || code != http.StatusOK {
			t.Fatalf("POST: %d %v", code, err)
		}
		p.open("#/events?source=orders")
		p.wait("the event listed", has("#events", "evt_xss"), e2e.Wait)
		p.open("#/event?source=orders&id=evt_xss")
		p.wait("the payload", has("#payload", "<b>bold</b>"), e2e.Wait)
		if got := p.eval(`[window.pwned, document.querySelectorAll('main img, main script, #payload b').length].join()`); got != ",0" {
			t.Errorf("markup from the webhook was interpreted: pwned,elements = %q", got)
		}
		if !strings.Contains(p.eval(`document.querySelector('main').textContent`), evil) {
			t.Error("the type is not shown as text")
		}
	})

	t.Run("ids that reorder text, are long or hold a slash", func(t *testing.T) {
		p.t = t
		// U+202E (right-to-left override) would show "abc\u202Egpj.exe" as "abcexe.jpg"; an id
		// of 256 bytes without a space must wrap, not widen the page; a "/" must be readable.
		bidi := "evt_abc\u202Egpj.exe"
		long := "evt_long/" + strings.Repeat("x", 247)
		e2e.MustPost(t, r.HTTP, "orders", bidi, "order.created", 1)
		e2e.MustPost(t, r.HTTP, "orders", long, "order.created", 2)
		p.open("#/events?source=orders")
		p.wait("the events listed", has("#events", "evt_long/"), e2e.Wait)
		if got := p.eval(`document.documentElement.scrollWidth - window.innerWidth`); got != "0" {
			t.Errorf("the events page is %s px wider than the window", got)
		}
		if !strings.Contains(p.eval(`document.querySelector('#events').textContent`), "evt_abc<U+202E>gpj.exe") {
			t.Error("the right-to-left override is not shown as <U+202E>")
		}
		p.shot("events-hostile-ids")
		p.open("#/event?source=orders&id=" + url.QueryEscape(long))
		p.wait("the long id's payload", has("#payload", `"n": 2`), e2e.Wait)
		if got := p.eval(`document.documentElement.scrollWidth - window.innerWidth`); got != "0" {
			t.Errorf("the event page of a 256-byte id is %s px wider than the window", got)
		}
		// The skip link moves focus to the page's content and stays on the page.
		p.do("skip to content", chromedp.Focus(chromedp.CSS("a.skip")), chromedp.Click(chromedp.CSS("a.skip")))
		if got := p.eval(`[document.activeElement.id, location.hash.startsWith('#/event?')].join()`); got != "main,true" {
			t.Errorf("after the skip link: focus,stayed = %q, want main,true", got)
		}
	})

	t.Run("refused request", func(t *testing.T) {
		p.t = t
		postWrong(t, r.HTTP, "orders", e2e.Event("evt_forged", "order.created", 1))
		p.open("#/refused?source=orders")
		p.wait("the refused request with reason signature", has("#refused .reason", "signature"), e2e.Wait)
		if p.eval(has("#refused", "evt_forged")) == "true" {
			t.Error("the refused request's body is shown")
		}
		p.shot("refused")
	})

	t.Run("dead letter redriven", func(t *testing.T) {
		p.t = t
		deadLetter(t, r, "evt_dead_1")
		p.open("#/dead-letters?source=orders&group=g")
		p.wait("the dead letter listed", has("#dead-letters", "evt_dead_1"), e2e.Wait)
		if got := p.eval(`document.querySelector('#dl-count').textContent`); got != "1" {
			t.Errorf("dead letters count %q, want 1", got)
		}
		if got := p.eval(`document.querySelector('#dead-letters tbody tr td:nth-child(5)').textContent`); got != "1" {
			t.Errorf("attempts shown %q, want the 1 delivery made", got)
		}
		p.do("redrive all", chromedp.Click(chromedp.ID("dl-redrive-all")))
		p.wait("the confirmation", `!!document.querySelector('#dl-confirm')`, e2e.Wait)
		p.shot("dead-letters")
		p.do("confirm", chromedp.Click(chromedp.ID("dl-confirm")))
		p.wait("redriven", has("#dl-result", "Redriven: 1"), e2e.Wait)
		p.wait("the count fallen to 0", `document.querySelector('#dl-count').textContent === '0'`, e2e.Wait)
	})

	t.Run("send a test webhook", func(t *testing.T) {
		p.t = t
		p.open("#/send?source=orders")
		p.do("send", chromedp.WaitVisible(chromedp.ID("send-body")), chromedp.Click(chromedp.ID("send-submit")))
		p.wait("the 200 answer", has("#send-result", "HTTP 200"), e2e.Wait)
		p.shot("send")
	})

	t.Run("overview", func(t *testing.T) {
		p.t = t
		p.open("")
		p.wait("the orders card with its group", has(`article[data-source="orders"]`, "Oldest"), e2e.Wait)
		if got := p.eval(`document.querySelector('article[data-source="orders"] tbody tr td:nth-child(5)').textContent`); got != "0" {
			t.Errorf("group g's dead letters in the overview after the redrive: %q, want 0", got)
		}
		p.shot("overview")
		// A phone, dark.
		p.do("phone, dark", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
			chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
					Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}})
				return err
			}))
		p.open("")
		p.wait("the overview on a phone", `document.querySelectorAll('article[data-source]').length === 2 && document.querySelector('article[data-source] .table-scroll') !== null`, e2e.Wait)
		// The group table fits the card: nothing hidden behind a horizontal scroll.
		if got := p.eval(`[...document.querySelectorAll('article[data-source] .table-scroll')].map((e) => e.scrollWidth - e.clientWidth).join()`); got != "0" {
			t.Errorf("a group table overflows its card on a phone by %s px", got)
		}
		p.shot("overview-phone-dark")
		p.do("laptop, light", chromedp.EmulateViewport(1280, 900),
			chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
				_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{})
				return err
			}))
	})

	t.Run("a token scoped to one source", func(t *testing.T) {
		p.t = t
		p.do("sign out", chromedp.Click(chromedp.CSS(`#who button`)))
		p.wait("the sign-in form", `!!document.querySelector('#token')`, e2e.Wait)
		p.signIn("viewer-token")
		p.wait("the overview of orders only", `document.querySelectorAll('article[data-source]').length === 1 && !!document.querySelector('article[data-source="orders"]')`, e2e.Wait)
		p.shot("scoped-token")
		p.open("#/events")
		p.wait("the events page", `!!document.querySelector('#ev-source')`, e2e.Wait)
		if got := p.eval(`[...document.querySelectorAll('#ev-source option')].map(o => o.value).join(',')`); got != "orders" {
			t.Errorf("sources offered to the scoped token: %q, want orders", got)
		}
		// The API behind the page says the same.
		get := func(path string) (int, []byte) {
			req, _ := http.NewRequest(http.MethodGet, "http://"+r.Admin+path, nil)
			return doToken(t, req, "viewer-token")
		}
		for _, c := range []struct {
			path string
			want int
		}{
			{"/v1/sources/billing/events", http.StatusForbidden},
			{"/v1/sources/orders/events", http.StatusOK},
			{"/v1/console/sources/billing/refused", http.StatusNotFound},
		} {
			if got, _ := get(c.path); got != c.want {
				t.Errorf("GET %s with the orders token: %d, want %d", c.path, got, c.want)
			}
		}
		var ov struct{ Sources []struct{ Name string } }
		_, body := get("/v1/console/overview")
		err := json.Unmarshal(body, &ov)
		if err != nil || len(ov.Sources) != 1 || ov.Sources[0].Name != "orders" {
			t.Errorf("overview for the orders token: %+v %v", ov, err)
		}
	})
	t.Logf("screenshots in %s", shots)
}
