// Package slack posts events to Slack (config type "slack"), either through
// an incoming webhook (webhook_url) or through the Web API's
// chat.postMessage (token + channel), with github.com/slack-go/slack.
//
// The default message is a Block Kit alert built from the Recall event (see
// message.go): a header with the event, the sub-code with its reason and the
// bot, recording and media ids, their metadata, and a context line with the
// message id, source and rules. A template option replaces it with plain
// text. Event data is escaped for mrkdwn in both, so that it cannot ping a
// channel, mention someone or make a link. Sends are paced
// by a token bucket (rate, default one message a second) shared by every
// sink of the process on one channel and credential (pace.go): Send waits
// its turn, which is pacing, not retrying.
//
// In Web API mode, thread_by keeps one thread per key whose parent shows
// the latest state of the key's objects (thread.go), and group_by folds a
// burst into one message updated in place (group.go); both keep their
// state in the relay's sinks.State.
//
// One Send is one request; redirects are not followed and slack-go's own
// retries stay off (they are off by default in slack-go v0.35.0). Errors are
// classified for the relay: a 429 carries its Retry-After (sinks.RetryAfter);
// 5xx, network failures and unknown API errors are retryable; an archived or
// missing channel, revoked credentials, a rejected payload and every other
// 4xx are permanent. The webhook URL and the token never appear in errors.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	goslack "github.com/slack-go/slack"

	"github.com/relay-dev/relay/sinks"
)

// Type is the sink's type, registered as "slack" by sinks/builtin. One
// delivery at a time by default keeps messages in order and within Slack's
// rate limits.
var Type = sinks.Type{New: New, Concurrency: 1}

var (
	_ sinks.Sink      = (*Sink)(nil)
	_ sinks.Previewer = (*Sink)(nil)
)

// Options are the sink's config keys. Exactly one of WebhookURL and Token
// is required; Channel goes with Token.
type Options struct {
	// WebhookURL is an incoming webhook URL; it is a secret.
	WebhookURL sinks.Secret `yaml:"webhook_url"`
	// Token is a bot token (xoxb-...) for chat.postMessage.
	Token sinks.Secret `yaml:"token"`
	// Channel is the channel ID or name to post to; required with Token.
	Channel string `yaml:"channel"`
	// APIURL is the Web API base URL (tests, Enterprise Grid); default
	// https://slack.com/api/. A missing trailing slash is added.
	APIURL string `yaml:"api_url"`
	// Template, when set, is a Go text/template over the delivery's Data
	// whose output is the message text (no blocks). Every value it prints
	// is escaped for mrkdwn (&, < and > become &amp;, &lt; and &gt;), so
	// event data cannot mention, ping or link; the template's own text is
	// not, and {{ raw .x }} prints a value as it is.
	Template string `yaml:"template"`
	// Rate paces messages ("1/s", "20/m"); default "1/s"; "" for no limit.
	Rate string `yaml:"rate"`
	// Timeout bounds one request; default 10s.
	Timeout time.Duration `yaml:"timeout"`
	// ThreadBy, Web API mode only, is an expression over the rule
	// environment giving a string key (e.g. recording.id): events of one
	// key share one thread whose parent message shows the latest state of
	// each of the key's objects (see thread.go). An empty key posts a
	// message of its own.
	ThreadBy string `yaml:"thread_by"`
	// GroupBy, Web API mode only and not with ThreadBy, lists expressions
	// whose values group a burst of events into one message.
	GroupBy []string `yaml:"group_by"`
	// GroupWait is how long a new group collects members before its
	// message is posted; default 30s.
	GroupWait time.Duration `yaml:"group_wait"`
	// GroupInterval is the least time between two updates of a group's
	// message; default 5m.
	GroupInterval time.Duration `yaml:"group_interval"`
}

// Sink is a Slack sink. Safe for concurrent use.
type Sink struct {
	// Webhook mode.
	webhookURL string   // secret
	webhookTo  string   // webhookURL for messages (sinks.RedactURL)
	secrets    []string // webhookURL and its parts, for sinks.Redact

	// Web API mode.
	api      *goslack.Client
	token    string // secret
	channel  string
	endpoint string                 // api_url + "chat.postMessage", for messages
	chanID   atomic.Pointer[string] // the channel's ID, once known (see knownChannel)

	tmpl    *sinks.Template
	sim     *previewSim // what Preview showed so far
	pacer   *pacer      // shared by the sinks of one channel and credential
	client  *http.Client
	timeout time.Duration // client.Timeout: the bound on one request

	// thread_by: the key of an event's thread, and the relay's state.
	threadBy  func(data map[string]any) (string, error)
	openState func(ctx context.Context) (sinks.State, error)

	// group_by: the group's values, its timing, and the flusher that
	// posts groups (running only when the relay gives a state).
	groupBy                  []func(data map[string]any) (string, error)
	groupWait, groupInterval time.Duration
	flush                    *flusher

	name      string
	userAgent string // sent with webhook posts
	now       func() time.Time
	log       *slog.Logger
	count     func(metric string, labels ...string)
}

// New builds a Slack sink from its config options, with env's User-Agent
// and clock. Each problem is reported as "<key>: <problem>", joined with
// errors.Join; no secret is ever quoted.
func New(name string, options map[string]any, env sinks.Env) (sinks.Sink, error) {
	o := Options{Rate: "1/s", Timeout: 10 * time.Second, GroupWait: defaultGroupWait, GroupInterval: defaultGroupInterval}
	env = env.WithDefaults()
	s := &Sink{sim: &previewSim{}, name: name, userAgent: env.UserAgent, now: env.Now, log: env.Logger, count: env.Count, openState: env.State}
	// Report decoding and validation problems together; a key that failed
	// to decode keeps its default.
	var errs []error
	if err := sinks.DecodeOptions(options, &o); err != nil {
		errs = append(errs, err)
	}

	webhook, token := o.WebhookURL != "", o.Token != ""
	switch {
	case webhook == token:
		errs = append(errs, errors.New("webhook_url: exactly one of webhook_url or token is required"))
	case webhook:
		u, err := url.Parse(o.WebhookURL.Reveal())
		switch {
		case err != nil: // err quotes the URL
			errs = append(errs, errors.New("webhook_url: invalid URL"))
		case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
			//lint:ignore ST1005 the "..." ends an example URL, not a sentence; error messages stay as they are
			errs = append(errs, errors.New("webhook_url: want an https URL such as https://hooks.slack.com/services/..."))
		default:
			s.webhookURL = o.WebhookURL.Reveal()
			s.webhookTo = sinks.RedactURL(u)
			s.secrets = append([]string{s.webhookURL}, sinks.URLSecrets(u)...)
		}
		if o.Channel != "" {
			errs = append(errs, errors.New("channel: only with token (an incoming webhook posts to its own channel)"))
		}
		if o.APIURL != "" {
			errs = append(errs, errors.New("api_url: only with token"))
		}
	case token:
		s.token = o.Token.Reveal()
		s.channel = strings.TrimSpace(o.Channel)
		if s.channel == "" {
			errs = append(errs, errors.New("channel: required with token"))
		}
		if channelID.MatchString(s.channel) {
			s.learnChannel(s.channel)
		}
	}

	apiURL := goslack.APIURL
	if o.APIURL != "" {
		u, err := url.Parse(o.APIURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, errors.New("api_url: want an http or https URL such as https://slack.com/api/"))
		}
		apiURL = o.APIURL
		if !strings.HasSuffix(apiURL, "/") {
			apiURL += "/" // slack-go appends the method name
		}
	}

	if o.Template != "" {
		t, err := sinks.ParseTemplate(name, o.Template, sinks.Escape(escape))
		if err != nil {
			errs = append(errs, fmt.Errorf("template: %w", err))
		}
		s.tmpl = t
	}

	perSecond, err := sinks.ParseRate(o.Rate)
	if err != nil {
		errs = append(errs, fmt.Errorf("rate: %w", err))
	}
	errs = append(errs, s.threadOptions(o, env, webhook)...)
	for _, key := range []string{"group_wait", "group_interval"} {
		if _, set := options[key]; set && len(o.GroupBy) == 0 {
			errs = append(errs, fmt.Errorf("%s: only with group_by", key))
		}
	}

	if o.Timeout <= 0 {
		errs = append(errs, errors.New("timeout: must be positive"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if webhook {
		s.pacer = sharedPacer(s.webhookURL, "", "", perSecond)
	} else {
		s.pacer = sharedPacer(s.token, apiURL, s.channel, perSecond)
	}

	s.timeout = o.Timeout
	s.client = &http.Client{
		Timeout: o.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a 3xx is an answer, and permanent
		},
		// slack-go reads a Web API answer whole: cap what it can read.
		Transport: sinks.LimitResponses(http.DefaultTransport.(*http.Transport).Clone(), maxAPIResponse),
	}
	if token {
		u, _ := url.Parse(apiURL)
		// The API's path is Slack's, not a secret: show it, and hide only
		// credentials and query, should api_url carry any.
		s.endpoint = sinks.RedactURL(&url.URL{Scheme: u.Scheme, User: u.User, Host: u.Host}) + u.EscapedPath() + "chat.postMessage"
		// No OptionRetry/OptionRetryConfig: slack-go then sends each
		// request once and the relay owns retries.
		s.api = goslack.New(s.token, goslack.OptionAPIURL(apiURL), goslack.OptionHTTPClient(s.client))
	}
	if s.groupBy != nil && s.openState != nil {
		s.startFlusher() // only in a running relay: check and test have no state
	}
	return s, nil
}

// maxAPIResponse bounds the answer to a chat.postMessage call, which
// echoes the message posted (Slack caps a message's text at 40,000
// characters and its blocks at 50).
const maxAPIResponse = 1 << 20

// Send posts one message for d, after waiting for its turn under the rate;
// with thread_by, it posts in d's thread (see thread.go). Each request, its
// answer included, takes at most the sink's timeout, and a bounded part of
// the answer is read.
func (s *Sink) Send(ctx context.Context, d sinks.Delivery) error {
	if s.threadBy != nil {
		key, err := s.threadBy(d.Data)
		if err != nil {
			return sinks.Permanent(fmt.Errorf("slack thread_by: %w", err))
		}
		if key != "" {
			return s.sendThreaded(ctx, d, key)
		}
	}
	if s.groupBy != nil {
		return s.sendGrouped(ctx, d)
	}
	msg, err := s.message(d)
	if err != nil {
		return err
	}
	if s.api != nil {
		_, _, err := s.post(ctx, "post", msg, "")
		return err
	}
	if err := s.pacer.wait(ctx, s.now); err != nil {
		return err
	}
	if err := s.postWebhook(ctx, msg); err != nil {
		return err
	}
	s.count("slack_messages", s.name, "post")
	return nil
}

// threadOptions checks thread_by, group_by and their companions.
func (s *Sink) threadOptions(o Options, env sinks.Env, webhook bool) []error {
	var errs []error
	thread, group := strings.TrimSpace(o.ThreadBy) != "", len(o.GroupBy) > 0
	if webhook && thread {
		errs = append(errs, errors.New("thread_by: only with token (an incoming webhook cannot reply in a thread or update a message)"))
	}
	if webhook && group {
		errs = append(errs, errors.New("group_by: only with token (an incoming webhook cannot update a message)"))
	}
	if thread && group {
		errs = append(errs, errors.New("group_by: not with thread_by (a sink either threads or groups)"))
	}
	if group && !webhook && !thread {
		errs = append(errs, s.compileGroupBy(o.GroupBy, env)...)
		s.groupWait, s.groupInterval = o.GroupWait, o.GroupInterval
	}
	if o.GroupWait < 0 {
		errs = append(errs, errors.New("group_wait: must not be negative"))
	}
	if o.GroupInterval < 0 {
		errs = append(errs, errors.New("group_interval: must not be negative"))
	}
	if thread && !webhook {
		if env.CompileString == nil {
			errs = append(errs, errors.New("thread_by: expressions are not available to this sink"))
		} else if f, err := env.CompileString(o.ThreadBy); err != nil {
			errs = append(errs, fmt.Errorf("thread_by: %w", err))
		} else {
			s.threadBy = f
		}
	}
	return errs
}

// payload is the JSON body of a webhook post and, with Channel, the JSON
// form of a chat.postMessage call.
type payload struct {
	Channel string `json:"channel,omitempty"`
	// TS is the message a chat.update replaces; ThreadTS the thread a
	// reply goes to (previews only: Send passes them as options).
	TS       string          `json:"ts,omitempty"`
	ThreadTS string          `json:"thread_ts,omitempty"`
	Text     string          `json:"text"`
	Blocks   []goslack.Block `json:"blocks,omitempty"`
}

func (s *Sink) message(d sinks.Delivery) (payload, error) {
	if s.tmpl == nil {
		return buildMessage(d), nil
	}
	text, err := s.tmpl.Render(d.Data)
	if err != nil {
		return payload{}, err
	}
	if strings.TrimSpace(text) == "" {
		return payload{}, sinks.Permanent(errors.New("template rendered an empty message"))
	}
	return payload{Text: truncate(text, maxText)}, nil
}

func (s *Sink) postWebhook(ctx context.Context, msg payload) error {
	body, err := encode(msg)
	if err != nil {
		return sinks.Permanent(fmt.Errorf("slack webhook: encode message: %w", err))
	}
	att := &sinks.HTTPAttempt{Method: http.MethodPost, Target: s.webhookTo, Timeout: s.timeout}
	req, err := http.NewRequestWithContext(att.Context(ctx), http.MethodPost, s.webhookURL, bytes.NewReader(body))
	if err != nil { // unreachable: the URL was validated; never quote it
		return sinks.Permanent(errors.New("slack webhook: invalid webhook_url"))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", s.userAgent)
	resp, err := s.client.Do(req)
	if err != nil {
		return sinks.Redact(fmt.Errorf("slack webhook: %w", att.RequestError(ctx, err)), s.secrets...)
	}
	defer resp.Body.Close()
	// Slack answers in plain text: "ok", or an error code such as
	// channel_not_found, no_text, invalid_payload.
	text, readErr := sinks.ReadResponseText(resp.Body)
	if readErr == nil {
		readErr = sinks.DrainResponse(resp.Body)
	}
	if err := sinks.ClassifyStatus(resp.StatusCode, resp.Status, resp.Header, text, s.now()); err != nil {
		err = att.ReadFailed(ctx, fmt.Errorf("slack webhook: %w", err), readErr)
		return sinks.Redact(err, s.secrets...)
	}
	return nil
}

// post sends msg with chat.postMessage, in the thread of threadTS when set
// (kind "reply", else "post"), after its turn under the channel's pacing.
// It returns the channel ID and the message's ts.
func (s *Sink) post(ctx context.Context, kind string, msg payload, threadTS string, extra ...goslack.MsgOption) (channel, ts string, err error) {
	if err := s.pacer.wait(ctx, s.now); err != nil {
		return "", "", err
	}
	opts := append(msgOptions(msg), extra...)
	if threadTS != "" {
		opts = append(opts, goslack.MsgOptionTS(threadTS))
	}
	att := &sinks.HTTPAttempt{Method: http.MethodPost, Target: s.endpoint, Timeout: s.timeout}
	channel, ts, err = s.api.PostMessageContext(att.Context(ctx), s.channel, opts...)
	if err := s.apiError(ctx, att, "chat.postMessage", err); err != nil {
		return "", "", err
	}
	s.learnChannel(channel)
	s.count("slack_messages", s.name, kind)
	return channel, ts, nil
}

// update replaces the message at ts in channel with msg (chat.update),
// after its turn under the channel's pacing.
func (s *Sink) update(ctx context.Context, channel, ts string, msg payload) error {
	if err := s.pacer.wait(ctx, s.now); err != nil {
		return err
	}
	if channel == "" {
		channel = s.channel
	}
	att := &sinks.HTTPAttempt{Method: http.MethodPost, Target: s.endpoint, Timeout: s.timeout}
	_, _, _, err := s.api.UpdateMessageContext(att.Context(ctx), channel, ts, msgOptions(msg)...)
	if err := s.apiError(ctx, att, "chat.update", err); err != nil {
		return err
	}
	s.count("slack_messages", s.name, "update")
	return nil
}

// compileGroupBy compiles group_by's expressions.
func (s *Sink) compileGroupBy(exprs []string, env sinks.Env) []error {
	if env.CompileString == nil {
		return []error{errors.New("group_by: expressions are not available to this sink")}
	}
	var errs []error
	for i, src := range exprs {
		f, err := env.CompileString(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("group_by[%d]: %w", i, err))
			continue
		}
		s.groupBy = append(s.groupBy, f)
	}
	return errs
}

func msgOptions(msg payload) []goslack.MsgOption {
	opts := []goslack.MsgOption{goslack.MsgOptionText(msg.Text, false)}
	if len(msg.Blocks) > 0 {
		opts = append(opts, goslack.MsgOptionBlocks(msg.Blocks...))
	}
	return opts
}

// permanentAPIErrors are chat.postMessage error codes a retry cannot fix.
var permanentAPIErrors = map[string]bool{
	"access_denied":                            true,
	"account_inactive":                         true,
	"action_prohibited":                        true,
	"as_user_not_supported":                    true,
	"cannot_reply_to_message":                  true,
	"channel_is_archived":                      true,
	"channel_not_found":                        true,
	"duplicate_channel_not_found":              true,
	"ekm_access_denied":                        true,
	"enterprise_is_restricted":                 true,
	"invalid_arg_name":                         true,
	"invalid_arguments":                        true,
	"invalid_array_arg":                        true,
	"invalid_auth":                             true,
	"invalid_blocks":                           true,
	"invalid_blocks_format":                    true,
	"invalid_charset":                          true,
	"invalid_form_data":                        true,
	"invalid_metadata_format":                  true,
	"invalid_payload":                          true,
	"is_archived":                              true,
	"messages_tab_disabled":                    true,
	"method_deprecated":                        true,
	"missing_scope":                            true,
	"msg_too_long":                             true,
	"no_permission":                            true,
	"no_text":                                  true,
	"not_allowed_token_type":                   true,
	"not_authed":                               true,
	"not_in_channel":                           true,
	"org_login_required":                       true,
	"restricted_action":                        true,
	"restricted_action_non_threadable_channel": true,
	"restricted_action_read_only_channel":      true,
	"restricted_action_thread_locked":          true,
	"restricted_action_thread_only_channel":    true,
	"team_access_not_granted":                  true,
	"token_expired":                            true,
	"token_revoked":                            true,
	"too_many_attachments":                     true,
	"two_factor_setup_required":                true,
}

// rateLimitedWait is the wait asked of the relay when the API reports
// "ratelimited" in its body rather than with a 429 and a Retry-After.
const rateLimitedWait = time.Second

// apiError is the error of the Web API call att made to method, nil for
// none: the attempt's timeout described, or the error classified; the token
// redacted either way.
func (s *Sink) apiError(ctx context.Context, att *sinks.HTTPAttempt, method string, err error) error {
	if te, ok := att.TimedOut(ctx, err); ok {
		return sinks.Redact(fmt.Errorf("slack %s: %w", method, te), s.token)
	}
	if err != nil {
		return sinks.Redact(s.classifyAPI(method, err), s.token)
	}
	return nil
}

// classifyAPI classifies the error of a call to method; a rate limit also
// holds the channel's pacing for the Retry-After.
func (s *Sink) classifyAPI(method string, err error) error {
	if err == nil {
		return nil
	}
	var (
		rl   *goslack.RateLimitedError
		code goslack.StatusCodeError
		api  goslack.SlackErrorResponse
		ue   *url.Error
	)
	switch {
	case errors.As(err, &rl):
		s.pacer.hold(s.now().Add(rl.RetryAfter))
		return sinks.RetryAfter(fmt.Errorf("slack %s: %w", method, err), rl.RetryAfter)
	case errors.As(err, &code):
		err = fmt.Errorf("slack %s: %w", method, err)
		if sinks.RetryableStatus(code.Code) {
			return err
		}
		return sinks.Permanent(err)
	case errors.As(err, &api):
		err = fmt.Errorf("slack %s: %w", method, err)
		switch {
		case api.Err == "ratelimited" || api.Err == "rate_limited":
			return sinks.RetryAfter(err, rateLimitedWait)
		case permanentAPIErrors[api.Err]:
			return sinks.Permanent(err)
		}
		return err // internal_error, fatal_error, service_unavailable, unknown codes
	case errors.As(err, &ue):
		return fmt.Errorf("slack %s: %w", method, sinks.TransportError(http.MethodPost, s.endpoint, err))
	case errors.Is(err, sinks.ErrResponseTooLarge):
		return fmt.Errorf("slack %s: answer larger than %d bytes: %w", method, maxAPIResponse, err)
	}
	return fmt.Errorf("slack %s: %w", method, err)
}

// Preview shows the request Send would make for d. In Web API mode the body
// is the JSON form of the chat.postMessage call (slack-go sends it form
// encoded); in webhook mode it is the exact request body.
//
// A thread_by or group_by sink previews a sequence (see previewSequence):
// the messages it would post and update given the deliveries previewed
// before.
func (s *Sink) Preview(d sinks.Delivery) (sinks.Preview, error) {
	if s.threadBy != nil || s.groupBy != nil {
		return s.previewSequence(d)
	}
	msg, err := s.message(d)
	if err != nil {
		return sinks.Preview{}, err
	}
	return s.previewCall("chat.postMessage", msg)
}

// previewCall shows a call to the Web API method (webhook mode: a post).
func (s *Sink) previewCall(method string, msg payload) (sinks.Preview, error) {
	p := sinks.Preview{Kind: "slack", Headers: map[string]string{"Content-Type": "application/json"}}
	if s.api != nil {
		msg.Channel = s.channel
		p.Request = http.MethodPost + " " + s.apiMethod(method)
		p.Headers["Authorization"] = "Bearer " + sinks.Secret(s.token).String()
	} else {
		p.Request = http.MethodPost + " " + s.webhookTo
	}
	body, err := encode(msg)
	if err != nil {
		return sinks.Preview{}, fmt.Errorf("encode message: %w", err)
	}
	p.Body = string(body)
	return p, nil
}

// encode marshals msg as compact JSON, leaving <, > and & unescaped (mrkdwn
// already escapes them as entities; Slack's own tokens such as <!date^…>
// stay readable).
func encode(msg payload) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// Close stops the group flusher (open groups stay in the relay's state for
// the next one) and releases idle connections.
func (s *Sink) Close(context.Context) error {
	s.stopFlusher()
	s.client.CloseIdleConnections()
	return nil
}
