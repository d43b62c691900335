package push

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Class is the outcome of one attempt, the label of the attempt metrics.
type Class string

// The classes of attempts.
const (
	ClassSuccess     Class = "success"      // 2xx: acknowledged
	ClassGone        Class = "gone"         // 410: the destination is paused
	ClassRateLimited Class = "rate_limited" // 429: retried after Retry-After
	ClassUnavailable Class = "unavailable"  // 503: retried after Retry-After
	ClassServerError Class = "server_error" // other 5xx
	ClassClientError Class = "client_error" // other 4xx
	ClassRedirect    Class = "redirect"     // 3xx: never followed
	ClassTimeout     Class = "timeout"      // no answer within timeout
	ClassConnection  Class = "connection"   // refused, reset, DNS, TLS
	ClassPrivate     Class = "private"      // a non-public address without allow_private
)

// maxResponseBytes bounds what is read of a response body (to reuse the connection and
// report the start of an error).
const maxResponseBytes = 4 << 10

// result is one attempt's outcome.
type result struct {
	class      Class
	status     int
	retryAfter time.Duration // from Retry-After on 429 and 503 (0: none)
	err        string        // what failed, for the log and the status (never a secret)
	latency    time.Duration
}

// classify maps a response or transport error to its class.
func classify(resp *http.Response, err error, now time.Time) result {
	if err != nil {
		var ne interface{ Timeout() bool }
		switch {
		case errors.Is(err, errPrivate):
			return result{class: ClassPrivate, err: errPrivate.Error()}
		case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
			return result{class: ClassTimeout, err: "timed out"}
		default:
			return result{class: ClassConnection, err: transportError(err)}
		}
	}
	r := result{status: resp.StatusCode}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		r.class = ClassSuccess
	case c == http.StatusGone:
		r.class = ClassGone
	case c == http.StatusTooManyRequests:
		r.class, r.retryAfter = ClassRateLimited, retryAfter(resp.Header.Get("Retry-After"), now)
	case c == http.StatusServiceUnavailable:
		r.class, r.retryAfter = ClassUnavailable, retryAfter(resp.Header.Get("Retry-After"), now)
	case c >= 500:
		r.class = ClassServerError
	case c >= 400:
		r.class = ClassClientError
	default:
		r.class = ClassRedirect
	}
	if r.class != ClassSuccess {
		r.err = "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	return r
}

// transportError describes err without the URL (which may carry credentials).
func transportError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// retryAfter parses a Retry-After value: seconds or an HTTP date; 0 when absent or invalid.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(math.MaxInt64/int64(time.Second)))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// backoff returns the delay before attempt n+1 after n attempts failed: full jitter, a
// uniform draw from [0, min(max, initial·multiplier^(n-1))].
func (r Retry) backoff(n int) time.Duration {
	ceiling := float64(r.Initial) * math.Pow(r.Multiplier, float64(max(n-1, 0)))
	ceiling = min(ceiling, float64(r.Max))
	return time.Duration(rand.Float64() * ceiling)
}

// drain reads what is left of a response body, up to maxResponseBytes, and closes it.
func drain(body io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(body, maxResponseBytes))
	_ = body.Close()
}
