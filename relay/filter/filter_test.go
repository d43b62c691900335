package filter_test

import (
	"strings"
	"testing"
	"time"

	eventrelayv1 "github.com/eventrelay/eventrelay/gen/eventrelay/v1"
	"github.com/eventrelay/eventrelay/relay"
	"github.com/eventrelay/eventrelay/relay/filter"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// stripeInvoice is a Stripe invoice.payment_failed event as Stripe sends it (abridged to
// about 1 KB).
const stripeInvoice = `{
  "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
  "object": "event",
  "api_version": "2022-11-15",
  "created": 1686089970,
  "type": "invoice.payment_failed",
  "livemode": false,
  "data": {
    "object": {
      "id": "in_1NG8Dt2eZvKYlo2C6iJSJRjK",
      "object": "invoice",
      "account_country": "DE",
      "amount_due": 125000,
      "currency": "eur",
      "customer": "cus_9s6XKzkNRiz8i3",
      "lines": {"data": [{"amount": 100000}, {"amount": 25000}]},
      "metadata": {"region": "eu"},
      "paid": false,
      "total": 1250.5,
      "amount_paid": 0,
      "amount_remaining": 125000,
      "attempt_count": 1,
      "attempted": true,
      "billing_reason": "subscription_cycle",
      "collection_method": "charge_automatically",
      "customer_email": "jenny.rosen@example.com",
      "customer_name": "Jenny Rosen",
      "hosted_invoice_url": "https://invoice.stripe.com/i/acct_1M2JTkLkdIwHu7ix/test_YWNjdF8xTTJKVGtMa2RJd0h1N2l4",
      "number": "9F1D2A3B-0007",
      "period_end": 1686089970,
      "period_start": 1683411570,
      "status": "open",
      "subscription": "sub_1NG8Dq2eZvKYlo2CkA5vnyZ7"
    }
  },
  "pending_webhooks": 1,
  "request": {"id": null, "idempotency_key": null}
}`

func stored(t testing.TB, ev *eventrelayv1.Event) []byte {
	t.Helper()
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stripeEvent(t testing.TB) *eventrelayv1.Event {
	return &eventrelayv1.Event{
		Id: "evt_1NG8Du2eZvKYlo2CUI79vXWy", Source: "stripe", Type: "invoice.payment_failed",
		Time:            timestamppb.New(time.Unix(1686089970, 0)),
		DataContentType: "application/json", Data: []byte(stripeInvoice),
		Headers:      map[string]string{"stripe-signature": "t=1,v1=x", "user-agent": "Stripe/1.0"},
		Verification: &eventrelayv1.Verification{Provider: "stripe", Scheme: "stripe-v1"},
		PartitionKey: "cus_9s6XKzkNRiz8i3",
	}
}

func TestMatch(t *testing.T) {
	ev := stored(t, stripeEvent(t))
	for _, tc := range []struct {
		expr     string
		want     bool
		usesData bool
	}{
		{`event.type.startsWith("invoice.") && data.data.object.amount_due > 100000`, true, true},
		{`event.type.startsWith("invoice.") && data.data.object.amount_due > 200000`, false, true},
		{`data.data.object.currency == "eur" && data.data.object.account_country in ["DE", "FR", "NL"]`, true, true},
		{`data.data.object.total > 1250`, true, true},           // a JSON float against an int
		{`data.data.object.amount_due == 125000.0`, true, true}, // an int against a double
		{`data.data.object.lines.data.exists(l, l.amount >= 100000)`, true, true},
		{`size(data.data.object.lines.data) == 2`, true, true},
		{`!data.data.object.paid`, true, true},
		{`data.data.object.metadata.region == "eu"`, true, true},
		{`event.source == "stripe" && event.verification.provider == "stripe"`, true, false},
		{`event.headers["user-agent"].startsWith("Stripe/")`, true, false},
		{`"stripe-signature" in event.headers`, true, false},
		{`event.partition_key == "cus_9s6XKzkNRiz8i3"`, true, false},
		{`event.time < timestamp("2024-01-01T00:00:00Z")`, true, false},
		{`event.data_content_type == "application/json"`, true, false},
		{`event.type.matches("^invoice\\.(paid|payment_failed)$")`, true, false},
		{`has(data.data.object.discount)`, false, true},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			f, err := filter.Compile(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if f.UsesData() != tc.usesData {
				t.Errorf("UsesData = %v, want %v", f.UsesData(), tc.usesData)
			}
			got, err := f.Match(relay.NewFilterInput(ev))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

// An expression that cannot be evaluated on an event is an error (the subscription counts
// it and skips the event).
func TestMatchErrors(t *testing.T) {
	ev := stored(t, stripeEvent(t))
	notJSON := stored(t, &eventrelayv1.Event{Id: "a", Type: "sms.received", DataContentType: "application/x-www-form-urlencoded", Data: []byte("From=%2B1555&Body=hi")})
	for _, tc := range []struct {
		name, expr string
		raw        []byte
		want       string
	}{
		{"missing field", `data.data.object.nope > 1`, ev, "no such key"},
		{"wrong type", `data.data.object.currency > 1`, ev, "no such overload"},
		{"not JSON: data is null", `data.Body == "hi"`, notJSON, ""},
		{"cost limit", `[1,2,3,4,5,6,7,8,9,10].all(a, [1,2,3,4,5,6,7,8,9,10].all(b, [1,2,3,4,5,6,7,8,9,10].all(c, [1,2,3,4,5,6,7,8,9,10].all(d, [1,2,3,4,5,6,7,8,9,10].all(e, a+b+c+d+e > 0)))))`, ev, "cost limit"},
		{"undecodable event", `event.id == "x"`, []byte{0xff, 0xff}, "does not decode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := filter.Compile(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			ok, err := f.Match(relay.NewFilterInput(tc.raw))
			if ok || err == nil {
				t.Fatalf("Match = %v, %v; want an error", ok, err)
			}
			if tc.want != "" && !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string // parts of the message, in order
	}{
		{``, []string{"filter: empty expression"}},
		{`event.type ==`, []string{"filter: ", "<input>:1:14", "Syntax error"}},
		{`event.typo == "x"`, []string{"filter: ", "<input>:1:6", "undefined field 'typo'"}},
		{`event.type`, []string{"filter: the expression is of type string; it must be a bool"}},
		{`nope == 1`, []string{"filter: ", "undeclared reference to 'nope'"}},
		{`event.type == 1`, []string{"filter: ", "found no matching overload for '_==_'"}},
		{strings.Repeat("(", 200) + "true" + strings.Repeat(")", 200), []string{"filter: ", "recursion"}},
		{strings.Repeat("a", relay.MaxFilterLen+1), []string{"filter: at most 4096 bytes, got 4097"}},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			_, err := filter.Compile(tc.expr)
			if relay.ErrorCode(err) != relay.CodeInvalid {
				t.Fatalf("error %v, want CodeInvalid", err)
			}
			msg := relay.ErrorMessage(err)
			rest := msg
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("message %q lacks %q (in order)", msg, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{
		`event.type.startsWith("invoice.") && data.data.object.amount_due > 100000`,
		`event.headers["x"] == "y"`, `data.a.b[0] > 1.5`, `has(data.x) || size(event.id) > 3`,
		`[1,2].all(x, x > 0)`, `event.time > timestamp("2024-01-01T00:00:00Z")`, `(((`, `"\u`,
	} {
		f.Add(s)
	}
	ev := stored(f, stripeEvent(f))
	f.Fuzz(func(t *testing.T, expr string) {
		flt, err := filter.Compile(expr)
		if err != nil {
			if relay.ErrorCode(err) != relay.CodeInvalid {
				t.Fatalf("Compile(%q): %v, want CodeInvalid", expr, err)
			}
			return
		}
		_, _ = flt.Match(relay.NewFilterInput(ev)) // must not panic, and ends (cost limit)
	})
}

func BenchmarkMatch(b *testing.B) {
	f, err := filter.Compile(`event.type.startsWith("invoice.") && data.data.object.amount_due > 100000`)
	if err != nil {
		b.Fatal(err)
	}
	in := relay.NewFilterInput(stored(b, stripeEvent(b)))
	in.Data() // parsed once per event per relayd, before the subscribers evaluate
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := f.Match(in); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkParse is the once-per-event part: decoding the stored event and parsing its
// 1 KB JSON payload.
func BenchmarkParse(b *testing.B) {
	raw := stored(b, stripeEvent(b))
	b.ReportAllocs()
	for b.Loop() {
		in := relay.NewFilterInput(raw)
		if in.Data() == nil {
			b.Fatal("no data")
		}
	}
}
