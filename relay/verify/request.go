package verify

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strings"
	"time"

	"github.com/eventrelay/eventrelay/relay"
)

// media is a set of content types.
type media uint8

const (
	mediaJSON      media = 1 << iota // application/json, application/*+json
	mediaForm                        // application/x-www-form-urlencoded
	mediaMultipart                   // multipart/form-data
	mediaXML                         // application/xml, text/xml
	mediaAny                         // anything, even no content type
)

var mediaNames = []struct {
	m    media
	name string
}{
	{mediaJSON, "application/json"},
	{mediaForm, "application/x-www-form-urlencoded"},
	{mediaMultipart, "multipart/form-data"},
	{mediaXML, "application/xml"},
}

// formatNames are the body_format names of media (raw: any content type).
var formatNames = []struct {
	m    media
	name string
}{{mediaJSON, "json"}, {mediaForm, "form"}, {mediaMultipart, "multipart"}, {mediaXML, "xml"}, {mediaAny, "raw"}}

// formatOf returns the media of a body_format name.
func formatOf(name string) (media, bool) {
	for _, f := range formatNames {
		if f.name == strings.ToLower(strings.TrimSpace(name)) {
			return f.m, true
		}
	}
	return 0, false
}

// formats lists the body_format names of the kinds in m, "|"-separated.
func (m media) formats() string {
	var names []string
	for _, f := range formatNames {
		if m&f.m != 0 {
			names = append(names, f.name)
		}
	}
	return strings.Join(names, "|")
}

// mediaOf classifies a Content-Type value; 0 when it is none of the known kinds.
func mediaOf(contentType string) media {
	mt, _, _ := strings.Cut(contentType, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	switch {
	case mt == "application/json" || strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return mediaJSON
	case mt == "application/x-www-form-urlencoded":
		return mediaForm
	case mt == "multipart/form-data":
		return mediaMultipart
	case mt == "application/xml" || mt == "text/xml":
		return mediaXML
	}
	return 0
}

func (m media) accepts(contentType string) bool {
	return m&mediaAny != 0 || mediaOf(contentType)&m != 0
}

// primary is the content type Sign sets on a request that has none.
func (m media) primary() string {
	for _, n := range mediaNames {
		if m&n.m != 0 {
			return n.name
		}
	}
	return ""
}

func (m media) String() string {
	if m&mediaAny != 0 {
		return "any content type"
	}
	var names []string
	for _, n := range mediaNames {
		if m&n.m != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, " or ")
}

// request is a WebhookRequest with its body parsed lazily, at most once.
type request struct {
	*relay.WebhookRequest
	cfgURL string
	// jsonOnly: fields are never read from a form body (body_format raw).
	jsonOnly bool

	formDone bool
	formVals url.Values
	formErr  error

	jsonDone bool
	jsonObj  relay.JSONObject // nil unless the body is a JSON object
}

// setBody replaces the body (Sign of body-signed schemes) and forgets what was parsed.
func (r *request) setBody(b []byte) {
	r.Body = b
	r.formDone, r.formVals, r.formErr = false, nil, nil
	r.jsonDone, r.jsonObj = false, nil
}

// isForm reports whether the body is form data (urlencoded or multipart) and the source reads
// form bodies (a raw source reads fields from JSON bodies only).
func (r *request) isForm() bool {
	if r.jsonOnly {
		return false
	}
	m := mediaOf(r.ContentType)
	return m == mediaForm || m == mediaMultipart
}

// form returns the form fields of a form body (never file parts of a multipart body).
func (r *request) form() (url.Values, error) {
	if !r.formDone {
		r.formVals, r.formErr = parseForm(r.ContentType, r.Body)
		r.formDone = true
	}
	return r.formVals, r.formErr
}

// signedURL is the URL a URL-signing scheme verifies: the source's configured url plus the
// request's query when a url is configured, else the request URL as received.
func (r *request) signedURL() string {
	if r.cfgURL == "" {
		return r.URL
	}
	if r.RawQuery == "" {
		return r.cfgURL
	}
	return r.cfgURL + "?" + r.RawQuery
}

// field returns the value at a dotted path of the body: a JSON object body, or a form field
// of a form body, else the same path in the JSON of its "payload" field (GitHub's form
// deliveries, Slack interactivity). Strings are unquoted, other JSON values as written.
func (r *request) field(path string) (string, bool) {
	if path == "" {
		return "", false
	}
	if r.isForm() {
		vals, _ := r.form()
		if v, ok := vals[path]; ok && len(v) > 0 {
			return v[0], true
		}
		if p := vals.Get("payload"); p != "" {
			return relay.JSONLookup([]byte(p), path)
		}
		return "", false
	}
	if !r.jsonDone {
		r.jsonDone = true
		r.jsonObj, _ = relay.ParseJSONObject(r.Body) // validated once, then scanned per field
	}
	if r.jsonObj == nil {
		return "", false
	}
	return r.jsonObj.Lookup(path)
}

// fieldTime returns the time at a body path (unix seconds or ms, or RFC 3339).
func (r *request) fieldTime(path string) (time.Time, bool) {
	s, ok := r.field(path)
	if !ok {
		return time.Time{}, false
	}
	return relay.JSONTime(s)
}

// Limits of multipart parsing: only small non-file fields are read.
const (
	maxFormParts      = 1000
	maxFormFieldBytes = 64 << 10
)

var errForm = errors.New("body is not valid form data")

// parseForm returns the fields of an application/x-www-form-urlencoded or multipart/form-data
// body. File parts and fields over 64 KiB are skipped.
func parseForm(contentType string, body []byte) (url.Values, error) {
	switch mediaOf(contentType) {
	case mediaForm:
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return vals, errForm
		}
		return vals, nil
	case mediaMultipart:
		_, params, err := mime.ParseMediaType(contentType)
		if err != nil || params["boundary"] == "" {
			return url.Values{}, errForm
		}
		return parseMultipart(body, params["boundary"])
	}
	return url.Values{}, errForm
}

func parseMultipart(body []byte, boundary string) (url.Values, error) {
	vals := url.Values{}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for range maxFormParts {
		part, err := mr.NextPart()
		if err == io.EOF {
			return vals, nil
		}
		if err != nil {
			return vals, errForm
		}
		name := part.FormName()
		if name == "" || part.FileName() != "" {
			continue
		}
		b, err := io.ReadAll(io.LimitReader(part, maxFormFieldBytes+1))
		if err != nil {
			return vals, errForm
		}
		if len(b) <= maxFormFieldBytes {
			vals.Add(name, string(b))
		}
	}
	return vals, errForm
}

// bodyFields is the extraction of providers whose event id, type, subject and time are plain
// dotted JSON paths of the body (an empty path extracts nothing).
type bodyFields struct{ id, typ, subject, time string }

func (f bodyFields) extract(r *request, v *relay.Verified) {
	v.ID, _ = r.field(f.id)
	v.Type, _ = r.field(f.typ)
	v.Subject, _ = r.field(f.subject)
	v.Time, _ = r.fieldTime(f.time)
}
