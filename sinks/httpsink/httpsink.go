// Package httpsink delivers events to any HTTP endpoint (config type
// "http").
//
// By default the request body is the event's original body, byte for byte,
// sent as application/json; a body_template replaces it. A rendered body
// sent as JSON (application/json, the default, or any +json type) must be
// valid JSON: one that is not fails the delivery permanently rather than
// send a malformed request. Every request
// carries Idempotency-Key (the svix message id) and User-Agent (from the
// sinks.Env the sink was built with); with a signing_secret it is also
// signed the Standard Webhooks / Svix way (webhook-id, webhook-timestamp,
// webhook-signature), so receivers can verify it with any Svix library.
//
// One Send is one request. Redirects are not followed. A 2xx response is a
// delivery; 408, 425, 429, 5xx and network failures are retryable (honouring
// Retry-After); every other status is permanent. Errors, and so dead-letter
// reasons and logs, name the destination by its scheme and host only: the
// URL's path and query (which often hold a token, as in
// https://hooks.example/T000/B000/XXXX or ?token=...) and its credentials,
// header values and the signing secret never appear in them, nor in the
// preview `relay test` shows.
package httpsink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	svix "github.com/svix/svix-webhooks/go"

	"github.com/relay-dev/relay/sinks"
)

// Type is the sink's type, registered as "http" by sinks/builtin.
var Type = sinks.Type{New: New, Concurrency: 0}

var (
	_ sinks.Sink      = (*Sink)(nil)
	_ sinks.Previewer = (*Sink)(nil)
	_ sinks.RawSender = (*Sink)(nil)
)

// Options are the sink's config keys.
type Options struct {
	// URL is the endpoint, http or https; required. It may carry credentials
	// (https://user:pass@host), which are sent as basic auth. Only its scheme
	// and host are ever shown (see sinks.RedactURL).
	URL string `yaml:"url"`
	// Method is the request method; default POST.
	Method string `yaml:"method"`
	// Headers are extra request headers. Their values are treated as secrets.
	// They may override Content-Type and User-Agent, not Idempotency-Key or
	// the signature headers.
	Headers map[string]string `yaml:"headers"`
	// Timeout bounds one request, response body included; default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// BodyTemplate, when set, is a Go text/template over the delivery's Data
	// whose output is the request body (see sinks.ParseTemplate); values
	// are not escaped, so put strings in with {{ json .x }}. When the body
	// is sent as JSON, a rendered body that is not valid JSON is a
	// permanent error.
	BodyTemplate string `yaml:"body_template"`
	// SigningSecret, when set, is a Svix signing secret ("whsec_" + base64)
	// used to sign each request.
	SigningSecret sinks.Secret `yaml:"signing_secret"`
}

// Sink is an HTTP sink. Safe for concurrent use.
type Sink struct {
	url     *url.URL
	safeURL string // url for messages: credentials, path and query redacted
	method  string
	headers http.Header // config headers
	secrets []string    // header values and URL parts, for sinks.Redact
	tmpl    *sinks.Template
	isJSON  bool // the body is sent as JSON: check what tmpl renders
	signer  *svix.Webhook
	client  *http.Client
	timeout time.Duration // client.Timeout: the bound on one attempt

	userAgent string
	now       func() time.Time
}

// New builds an HTTP sink from its config options, with env's User-Agent
// and clock. Each problem is reported as "<key>: <problem>", joined with
// errors.Join; no secret is ever quoted.
func New(name string, options map[string]any, env sinks.Env) (sinks.Sink, error) {
	o := Options{Method: http.MethodPost, Timeout: 10 * time.Second}
	env = env.WithDefaults()
	s := &Sink{userAgent: env.UserAgent, now: env.Now}
	// Report decoding and validation problems together; a key that failed
	// to decode keeps its default.
	var errs []error
	err := sinks.DecodeOptions(options, &o)
	if err != nil {
		errs = append(errs, err)
	}

	switch u, perr := url.Parse(o.URL); {
	case o.URL == "":
		errs = append(errs, errors.New("url: required"))
	case perr != nil: // perr quotes the URL: never show it
		errs = append(errs, errors.New("url: invalid URL"))
	case u.Scheme != "http" && u.Scheme != "https":
		errs = append(errs, errors.New("url: scheme must be http or https"))
	case u.Host == "":
		errs = append(errs, errors.New("url: host required"))
	default:
		s.url = u
		s.safeURL = sinks.RedactURL(u)
		s.secrets = append(s.secrets, sinks.URLSecrets(u)...)
	}

	s.method = strings.ToUpper(strings.TrimSpace(o.Method))
	if !validToken(s.method) {
		errs = append(errs, errors.New("method: invalid HTTP method"))
	}

	s.headers = make(http.Header)
	for _, k := range slices.Sorted(maps.Keys(o.Headers)) {
		switch {
		case !validToken(k):
			errs = append(errs, fmt.Errorf("headers: invalid header name %q", k))
			continue
		case reserved[http.CanonicalHeaderKey(k)]:
			errs = append(errs, fmt.Errorf("headers: %s is set by the sink", http.CanonicalHeaderKey(k)))
			continue
		case strings.ContainsAny(o.Headers[k], "\r\n\x00"):
			errs = append(errs, fmt.Errorf("headers: invalid value for %s", http.CanonicalHeaderKey(k)))
			continue
		}
		s.headers.Set(k, o.Headers[k])
		if v := strings.TrimSpace(o.Headers[k]); len(v) >= 4 {
			s.secrets = append(s.secrets, v)
		}
	}

	if o.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be positive"))
	}

	if o.BodyTemplate != "" {
		if s.tmpl, err = sinks.ParseTemplate(name, o.BodyTemplate); err != nil {
			errs = append(errs, fmt.Errorf("body_template: %w", err))
		}
		contentType := defaultContentType
		if v := s.headers.Get("Content-Type"); v != "" {
			contentType = v
		}
		s.isJSON = isJSONType(contentType)
	}

	if o.SigningSecret != "" {
		key := strings.TrimPrefix(o.SigningSecret.Reveal(), "whsec_")
		wh, werr := svix.NewWebhook(o.SigningSecret.Reveal())
		if werr != nil || key == "" {
			errs = append(errs, errors.New("signing_secret: invalid (want whsec_ followed by base64)"))
		} else {
			s.signer = wh
			s.secrets = append(s.secrets, o.SigningSecret.Reveal(), key)
		}
	}

	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	// The default keeps 2 idle connections per host: a sink with a higher
	// concurrency would dial for most deliveries.
	tr.MaxIdleConnsPerHost = 64
	s.timeout = o.Timeout
	s.client = &http.Client{
		Timeout: o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx is an answer, and permanent
		},
		Transport: tr,
	}
	return s, nil
}

// reserved headers are always set by the sink itself.
var reserved = map[string]bool{
	"Idempotency-Key":   true,
	"Webhook-Id":        true,
	"Webhook-Timestamp": true,
	"Webhook-Signature": true,
	"Content-Length":    true,
	"Host":              true,
}

// Send makes one request for d. See the package documentation for how the
// response is classified. The whole attempt, the response body included,
// takes at most the sink's timeout, and at most MaxResponseBody bytes of
// the body are read: a destination that never answers, answers a byte at
// a time or sends a huge body costs one slot for one timeout at most.
func (s *Sink) Send(ctx context.Context, d sinks.Delivery) error {
	att := &sinks.HTTPAttempt{Method: s.method, Target: s.safeURL, Timeout: s.timeout}
	req, err := s.request(att.Context(ctx), d, s.now())
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return sinks.Redact(att.RequestError(ctx, err), s.secrets...)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		// Delivered, whatever the rest of the body does; drain a little
		// so the connection can be reused.
		_ = sinks.DrainResponse(resp.Body)
		return nil
	}
	body, readErr := sinks.ReadResponseText(resp.Body)
	if readErr == nil {
		readErr = sinks.DrainResponse(resp.Body)
	}
	err = sinks.ClassifyStatus(resp.StatusCode, resp.Status, resp.Header, body, s.now())
	err = att.ReadFailed(ctx, fmt.Errorf("%s %s: %w", strings.ToLower(s.method), s.safeURL, err), readErr)
	return sinks.Redact(err, s.secrets...)
}

// request builds the request for d as of now.
func (s *Sink) request(ctx context.Context, d sinks.Delivery, now time.Time) (*http.Request, error) {
	body, err := s.body(d)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, s.method, s.url.String(), bytes.NewReader(body))
	if err != nil { // unreachable: method and URL were validated
		return nil, sinks.Permanent(errors.New("build request: invalid method or url"))
	}
	req.Header = make(http.Header, len(s.headers)+6)
	req.Header.Set("Content-Type", defaultContentType)
	req.Header.Set("User-Agent", s.userAgent)
	for k, v := range s.headers {
		req.Header[k] = v
	}
	if d.MsgID != "" {
		req.Header.Set("Idempotency-Key", d.MsgID)
	}
	if s.signer != nil {
		sig, err := s.signer.Sign(d.MsgID, now, body)
		if err != nil {
			return nil, sinks.Permanent(errors.New("sign request: signing failed"))
		}
		req.Header.Set("webhook-id", d.MsgID)
		req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
		req.Header.Set("webhook-signature", sig)
	}
	return req, nil
}

func (s *Sink) body(d sinks.Delivery) ([]byte, error) {
	if s.tmpl == nil {
		return d.Body, nil
	}
	out, err := s.tmpl.Render(d.Data)
	if err != nil {
		return nil, err
	}
	if s.isJSON {
		if err := checkJSON([]byte(out)); err != nil {
			return nil, err
		}
	}
	return []byte(out), nil
}

// defaultContentType is the Content-Type of a request whose config sets none.
const defaultContentType = "application/json"

// isJSONType reports whether a Content-Type value announces JSON:
// application/json or a structured +json type, parameters ignored.
func isJSONType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// checkJSON returns a permanent error, naming the problem and its byte
// offset, when a rendered body is not valid JSON: the same data would
// render the same body again.
func checkJSON(body []byte) error {
	if json.Valid(body) {
		return nil
	}
	var se *json.SyntaxError
	if err := json.Unmarshal(body, new(any)); errors.As(err, &se) {
		return sinks.Permanent(fmt.Errorf("body_template: rendered body is not valid JSON: %v (offset %d)", se, se.Offset))
	}
	return sinks.Permanent(errors.New("body_template: rendered body is not valid JSON"))
}

// RawOnly reports that the sink reads Delivery.Data only to render a
// body_template.
func (s *Sink) RawOnly() bool { return s.tmpl == nil }

// Preview shows the request Send would make for d: the URL's credentials,
// path and query hidden, the values of configured headers and of the
// signature redacted.
func (s *Sink) Preview(d sinks.Delivery) (sinks.Preview, error) {
	req, err := s.request(context.Background(), d, s.now())
	if err != nil {
		return sinks.Preview{}, err
	}
	body, _ := io.ReadAll(req.Body)
	p := sinks.Preview{
		Kind:    "http",
		Request: s.method + " " + s.safeURL,
		Headers: make(map[string]string, len(req.Header)),
		Body:    string(body),
	}
	for k, v := range req.Header {
		val := strings.Join(v, ", ")
		if _, fromConfig := s.headers[k]; fromConfig || k == "Webhook-Signature" {
			val = sinks.Secret(val).String()
		}
		p.Headers[k] = val
	}
	return p, nil
}

// Close releases idle connections.
func (s *Sink) Close(context.Context) error {
	s.client.CloseIdleConnections()
	return nil
}

// validToken reports whether s is a non-empty RFC 9110 token (a method or
// a header name).
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
