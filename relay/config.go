package relay

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/providers/file"
	"github.com/knadh/koanf/v2"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
)

// Config is a loaded and validated configuration file. See the contract for
// the meaning of each key; LoadConfig fills every default.
type Config struct {
	Server  ServerConfig
	Storage StorageConfig
	Sources map[string]SourceConfig
	Sinks   map[string]SinkConfig
	Retry   RetryPolicy
	Rules   []rules.Spec
	// RuleSet is Rules compiled.
	RuleSet *rules.Set
}

// ServerConfig holds the listeners and their limits.
type ServerConfig struct {
	Listen        string
	AdminListen   string
	AdminToken    sinks.Secret
	MaxBodyBytes  int64
	ShutdownGrace time.Duration
	// IngestPriority lets deliveries give way to a busy ingest.
	IngestPriority IngestPriority
}

// IngestPriority says when deliveries give way to webhook requests: while
// the ingest load (verified requests in flight, averaged over 20 ms) is
// BusyAt or more, each delivery waits up to MaxHold for ingest to ease
// before it sends. BusyAt 0 turns it off.
type IngestPriority struct {
	BusyAt  int           `koanf:"busy_at"`
	MaxHold time.Duration `koanf:"max_hold"`
}

// StorageConfig says where events are kept.
type StorageConfig struct {
	// Dir is the embedded JetStream store's directory (embedded mode).
	Dir string
	// URL, when set, selects cluster mode: an existing NATS deployment.
	URL string
	// Replicas is the stream replica count in cluster mode.
	Replicas int
	// SyncAlways: fsync before a write is confirmed. Otherwise the store
	// syncs every SyncInterval.
	SyncAlways   bool
	SyncInterval time.Duration
	// DedupeWindow is how long a repeated message id is recognised.
	DedupeWindow time.Duration
	// AckWait is how long a delivery handed to a worker may go without news
	// before the store hands it out again (after a crash, say).
	AckWait time.Duration
}

// SourceConfig is one webhook endpoint.
type SourceConfig struct {
	Path      string
	Secrets   []sinks.Secret
	Tolerance time.Duration
}

// SinkConfig is one configured sink: its type, the options its constructor
// decodes, and the delivery settings the relay applies to it.
type SinkConfig struct {
	Type        string
	Concurrency int
	Retry       RetryPolicy
	Options     map[string]any
}

// RetryPolicy says how long and how often a failing delivery is retried.
type RetryPolicy struct {
	MaxAttempts     int           `koanf:"max_attempts"`
	InitialInterval time.Duration `koanf:"initial_interval"`
	MaxInterval     time.Duration `koanf:"max_interval"`
	Multiplier      float64       `koanf:"multiplier"`
	Jitter          float64       `koanf:"jitter"`
	MaxAge          time.Duration `koanf:"max_age"`
}

// DefaultRetry returns the retry policy that applies when the config does
// not set one.
func DefaultRetry() RetryPolicy {
	return RetryPolicy{
		MaxAttempts:     10,
		InitialInterval: time.Second,
		MaxInterval:     10 * time.Minute,
		Multiplier:      2,
		Jitter:          0.2,
		MaxAge:          24 * time.Hour,
	}
}

// DefaultIngestPriority applies when the config does not say: busy at a
// load of 6 requests in flight per CPU the process may use (GOMAXPROCS),
// deliveries held at most 50 ms. See docs/operations.md for how it was
// chosen.
func DefaultIngestPriority() IngestPriority {
	return IngestPriority{BusyAt: 6 * runtime.GOMAXPROCS(0), MaxHold: 50 * time.Millisecond}
}

// defaultSinkConcurrency applies when neither the sink's config nor its type
// says how many deliveries may be in flight.
const defaultSinkConcurrency = 4

// fileConfig mirrors the YAML schema for decoding; unknown keys are errors.
type fileConfig struct {
	Server struct {
		Listen         string         `koanf:"listen"`
		AdminListen    string         `koanf:"admin_listen"`
		AdminToken     string         `koanf:"admin_token"`
		MaxBodyBytes   int64          `koanf:"max_body_bytes"`
		ShutdownGrace  time.Duration  `koanf:"shutdown_grace"`
		IngestPriority IngestPriority `koanf:"ingest_priority"`
	} `koanf:"server"`
	Storage struct {
		Dir          string        `koanf:"dir"`
		URL          string        `koanf:"url"`
		Replicas     int           `koanf:"replicas"`
		Sync         string        `koanf:"sync"`
		DedupeWindow time.Duration `koanf:"dedupe_window"`
		AckWait      time.Duration `koanf:"ack_wait"`
	} `koanf:"storage"`
	Sources map[string]struct {
		Path      string        `koanf:"path"`
		Secrets   []string      `koanf:"secrets"`
		Tolerance time.Duration `koanf:"tolerance"`
	} `koanf:"sources"`
	Sinks map[string]map[string]any `koanf:"sinks"`
	Retry RetryPolicy               `koanf:"retry"`
	Rules []struct {
		Name  string   `koanf:"name"`
		When  string   `koanf:"when"`
		Sinks []string `koanf:"sinks"`
		Stop  bool     `koanf:"stop"`
	} `koanf:"rules"`
}

func defaultFileConfig() fileConfig {
	var fc fileConfig
	fc.Server.Listen = ":8080"
	fc.Server.AdminListen = "127.0.0.1:9090"
	fc.Server.MaxBodyBytes = 1 << 20
	fc.Server.ShutdownGrace = 20 * time.Second
	fc.Server.IngestPriority = DefaultIngestPriority()
	fc.Storage.Dir = "./data"
	fc.Storage.Replicas = 1
	fc.Storage.Sync = "always"
	fc.Storage.DedupeWindow = 24 * time.Hour
	fc.Storage.AckWait = 30 * time.Second
	fc.Retry = DefaultRetry()
	return fc
}

// LoadOptions adjusts LoadConfig for tests and tools.
type LoadOptions struct {
	// Environ lists the environment as KEY=VALUE pairs; nil means os.Environ.
	Environ []string
	// Registry builds the sinks to validate their options; nil skips sink
	// option validation (types are then not checked either).
	Registry *sinks.Registry
}

// LoadConfig reads the YAML file at path, expands ${VAR} and ${VAR:-default}
// in string values, applies RELAY_<PATH> environment overrides (levels
// separated by "__"), fills defaults and validates everything. On failure the
// error joins one problem per line, each starting with its config path
// ("rules[2].sinks[0]: unknown sink \"slak\""); it never contains a secret.
func LoadConfig(path string, o LoadOptions) (*Config, error) {
	environ := o.Environ
	if environ == nil {
		environ = os.Environ()
	}
	lookup := envLookup(environ)

	raw := koanf.New(".")
	if err := raw.Load(file.Provider(path), yaml.Parser()); err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(expandAll(raw.Raw(), lookup).(map[string]any), ""), nil); err != nil {
		return nil, fmt.Errorf("expand config %s: %w", path, err)
	}
	if err := k.Load(env.Provider(".", env.Opt{
		Prefix:        "RELAY_",
		EnvironFunc:   func() []string { return environ },
		TransformFunc: envOverrideKey,
	}), nil); err != nil {
		return nil, fmt.Errorf("environment overrides: %w", err)
	}
	return decodeConfig(k, o.Registry)
}

// envOverrideKey maps RELAY_SERVER__LISTEN to server.listen. Variables without
// "__" (RELAY_ADMIN_TOKEN and friends) are not overrides and are ignored.
func envOverrideKey(k, v string) (string, any) {
	k = strings.TrimPrefix(k, "RELAY_")
	if !strings.Contains(k, "__") {
		return "", nil
	}
	return strings.ToLower(strings.ReplaceAll(k, "__", ".")), v
}

func envLookup(environ []string) func(string) (string, bool) {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

var varPattern = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandAll replaces ${VAR} and ${VAR:-default} in every string of v.
// An unset variable without a default becomes "".
func expandAll(v any, lookup func(string) (string, bool)) any {
	switch x := v.(type) {
	case string:
		return varPattern.ReplaceAllStringFunc(x, func(m string) string {
			sub := varPattern.FindStringSubmatch(m)
			if val, ok := lookup(sub[1]); ok && (val != "" || sub[2] == "") {
				return val
			}
			return sub[3]
		})
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = expandAll(e, lookup)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = expandAll(e, lookup)
		}
		return out
	}
	return v
}

func decodeConfig(k *koanf.Koanf, reg *sinks.Registry) (*Config, error) {
	fc := defaultFileConfig()
	var md mapstructure.Metadata
	var errs []error
	err := k.UnmarshalWithConf("", &fc, koanf.UnmarshalConf{
		DecoderConfig: &mapstructure.DecoderConfig{
			TagName:          "koanf",
			Result:           &fc,
			Metadata:         &md,
			WeaklyTypedInput: true,
			DecodeHook:       mapstructure.StringToTimeDurationHookFunc(),
		},
	})
	errs = append(errs, decodeErrors(err)...)
	sort.Strings(md.Unused)
	for _, key := range md.Unused {
		errs = append(errs, fmt.Errorf("%s: unknown key", configPath(key)))
	}
	// Values that failed to decode keep their defaults: validate the rest
	// anyway so that every problem is reported at once.

	cfg := &Config{
		Server: ServerConfig{
			Listen:         fc.Server.Listen,
			AdminListen:    fc.Server.AdminListen,
			AdminToken:     sinks.Secret(fc.Server.AdminToken),
			MaxBodyBytes:   fc.Server.MaxBodyBytes,
			ShutdownGrace:  fc.Server.ShutdownGrace,
			IngestPriority: fc.Server.IngestPriority,
		},
		Storage: StorageConfig{
			Dir:          fc.Storage.Dir,
			URL:          fc.Storage.URL,
			Replicas:     fc.Storage.Replicas,
			DedupeWindow: fc.Storage.DedupeWindow,
			AckWait:      fc.Storage.AckWait,
		},
		Sources: make(map[string]SourceConfig, len(fc.Sources)),
		Sinks:   make(map[string]SinkConfig, len(fc.Sinks)),
		Retry:   fc.Retry,
	}
	errs = append(errs, validateServer(&cfg.Server)...)
	if err := deriveSync(&cfg.Storage, fc.Storage.Sync); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, validateStorage(cfg.Storage)...)
	errs = append(errs, validateRetry("retry", cfg.Retry)...)

	if len(fc.Sources) == 0 {
		errs = append(errs, errors.New("sources: at least one source required"))
	}
	paths := make(map[string]string)
	for _, name := range sortedKeys(fc.Sources) {
		if err := validateName(name); err != nil {
			errs = append(errs, fmt.Errorf("sources.%s: %w", name, err))
		}
		s := fc.Sources[name]
		src := SourceConfig{Path: s.Path, Tolerance: s.Tolerance}
		if src.Path == "" {
			src.Path = "/webhooks/" + name
		}
		if src.Tolerance == 0 {
			src.Tolerance = 5 * time.Minute
		}
		p := "sources." + name
		if !strings.HasPrefix(src.Path, "/") {
			errs = append(errs, fmt.Errorf("%s.path: must start with \"/\"", p))
		} else if other, dup := paths[src.Path]; dup {
			errs = append(errs, fmt.Errorf("%s.path: %q is also the path of sources.%s", p, src.Path, other))
		} else {
			paths[src.Path] = name
		}
		if src.Tolerance < 0 {
			errs = append(errs, fmt.Errorf("%s.tolerance: must be positive", p))
		}
		if len(s.Secrets) == 0 {
			errs = append(errs, fmt.Errorf("%s.secrets: at least one secret required", p))
		}
		for i, sec := range s.Secrets {
			if err := validateWebhookSecret(sec); err != nil {
				errs = append(errs, fmt.Errorf("%s.secrets[%d]: %w", p, i, err))
			}
			src.Secrets = append(src.Secrets, sinks.Secret(sec))
		}
		cfg.Sources[name] = src
	}

	for _, name := range sortedKeys(fc.Sinks) {
		if err := validateName(name); err != nil {
			errs = append(errs, fmt.Errorf("sinks.%s: %w", name, err))
		}
		sc, sinkErrs := decodeSink(name, fc.Sinks[name], cfg.Retry, reg)
		errs = append(errs, sinkErrs...)
		cfg.Sinks[name] = sc
	}

	for _, r := range fc.Rules {
		cfg.Rules = append(cfg.Rules, rules.Spec{Name: r.Name, When: r.When, Sinks: r.Sinks, Stop: r.Stop})
	}
	set, err := rules.Compile(cfg.Rules, func(s string) bool { _, ok := cfg.Sinks[s]; return ok })
	if err != nil {
		errs = append(errs, flatten(err)...)
	}
	cfg.RuleSet = set
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// validateName checks a source or sink name: it becomes part of NATS subjects
// and consumer names, so it is limited to letters, digits, "-" and "_".
func validateName(name string) error {
	if !namePattern.MatchString(name) {
		return errors.New(`invalid name (use 1 to 64 letters, digits, "-" or "_")`)
	}
	return nil
}

// validateWebhookSecret accepts "whsec_" followed by non-empty base64. The
// svix library would accept an empty key, which verifies anything signed
// with an empty key: never allow it.
func validateWebhookSecret(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("empty secret")
	}
	key, ok := strings.CutPrefix(s, "whsec_")
	if !ok {
		return errors.New("malformed secret (want whsec_ followed by base64)")
	}
	b, err := base64.StdEncoding.DecodeString(key)
	if err != nil || len(b) == 0 {
		return errors.New("malformed secret (want whsec_ followed by base64)")
	}
	return nil
}

func validateServer(s *ServerConfig) []error {
	var errs []error
	if s.Listen == "" {
		errs = append(errs, errors.New("server.listen: required"))
	}
	if s.AdminListen == "" {
		errs = append(errs, errors.New("server.admin_listen: required"))
	}
	if s.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("server.max_body_bytes: must be positive"))
	}
	if s.ShutdownGrace < 0 {
		errs = append(errs, errors.New("server.shutdown_grace: must not be negative"))
	}
	if s.IngestPriority.BusyAt < 0 {
		errs = append(errs, errors.New("server.ingest_priority.busy_at: must not be negative (0 turns it off)"))
	}
	if s.IngestPriority.MaxHold < 0 {
		errs = append(errs, errors.New("server.ingest_priority.max_hold: must not be negative"))
	}
	return errs
}

// deriveSync sets SyncAlways and SyncInterval from storage.sync, or says
// why sync is invalid.
func deriveSync(s *StorageConfig, sync string) error {
	if sync == "always" {
		s.SyncAlways = true
		return nil
	}
	d, err := time.ParseDuration(sync)
	s.SyncInterval = d
	if err != nil || d <= 0 {
		return errors.New(`storage.sync: invalid value (want "always" or an interval such as 1s)`)
	}
	return nil
}

// validateStorage checks the storage keys; storage.sync is checked by
// deriveSync.
func validateStorage(s StorageConfig) []error {
	var errs []error
	if s.URL == "" && s.Dir == "" {
		errs = append(errs, errors.New("storage.dir: required unless storage.url is set"))
	}
	if s.Replicas < 1 || s.Replicas > 5 {
		errs = append(errs, errors.New("storage.replicas: must be between 1 and 5"))
	}
	if s.DedupeWindow <= 0 {
		errs = append(errs, errors.New("storage.dedupe_window: must be positive"))
	}
	if s.AckWait < time.Second {
		errs = append(errs, errors.New("storage.ack_wait: must be at least 1s"))
	}
	return errs
}

func validateRetry(p string, r RetryPolicy) []error {
	var errs []error
	if r.MaxAttempts < 1 {
		errs = append(errs, fmt.Errorf("%s.max_attempts: must be at least 1", p))
	}
	if r.InitialInterval <= 0 {
		errs = append(errs, fmt.Errorf("%s.initial_interval: must be positive", p))
	}
	if r.MaxInterval < r.InitialInterval {
		errs = append(errs, fmt.Errorf("%s.max_interval: must not be less than initial_interval", p))
	}
	if r.Multiplier < 1 {
		errs = append(errs, fmt.Errorf("%s.multiplier: must be at least 1", p))
	}
	if r.Jitter < 0 || r.Jitter > 1 {
		errs = append(errs, fmt.Errorf("%s.jitter: must be between 0 and 1", p))
	}
	if r.MaxAge <= 0 {
		errs = append(errs, fmt.Errorf("%s.max_age: must be positive", p))
	}
	return errs
}

// decodeSink splits a sink's block into the keys the relay owns (type,
// concurrency, retry) and the options its constructor decodes.
func decodeSink(name string, block map[string]any, defaults RetryPolicy, reg *sinks.Registry) (SinkConfig, []error) {
	p := "sinks." + name
	sc := SinkConfig{Retry: defaults, Options: make(map[string]any)}
	var errs []error
	for k, v := range block {
		switch k {
		case "type":
			s, ok := v.(string)
			if !ok {
				errs = append(errs, fmt.Errorf("%s.type: must be a string", p))
			}
			sc.Type = s
		case "concurrency":
			n, err := strconv.Atoi(fmt.Sprint(v))
			if err != nil || n < 1 {
				errs = append(errs, fmt.Errorf("%s.concurrency: must be a whole number of at least 1", p))
			}
			sc.Concurrency = n
		case "retry":
			var md mapstructure.Metadata
			dec, _ := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
				TagName: "koanf", Result: &sc.Retry, Metadata: &md,
				WeaklyTypedInput: true, DecodeHook: mapstructure.StringToTimeDurationHookFunc(),
			})
			for _, e := range decodeErrors(dec.Decode(v)) {
				errs = append(errs, fmt.Errorf("%s.retry%s", p, prefixDot(e.Error())))
			}
			for _, u := range md.Unused {
				errs = append(errs, fmt.Errorf("%s.retry.%s: unknown key", p, u))
			}
			errs = append(errs, validateRetry(p+".retry", sc.Retry)...)
		default:
			sc.Options[k] = v
		}
	}
	if sc.Type == "" {
		errs = append(errs, fmt.Errorf("%s.type: required", p))
		return sc, errs
	}
	if reg == nil {
		return sc, errs
	}
	t, ok := reg.Lookup(sc.Type)
	if !ok {
		errs = append(errs, fmt.Errorf("%s.type: unknown sink type %q (known: %s)", p, sc.Type, strings.Join(reg.Names(), ", ")))
		return sc, errs
	}
	if sc.Concurrency == 0 {
		sc.Concurrency = t.Concurrency
	}
	if sc.Concurrency == 0 {
		sc.Concurrency = defaultSinkConcurrency
	}
	if err := validateSinkOptions(name, sc, t); err != nil {
		for _, e := range flatten(err) {
			errs = append(errs, fmt.Errorf("%s.%w", p, e))
		}
	}
	return sc, errs
}

// validateSinkOptions builds the sink once to check its options, then
// closes it.
func validateSinkOptions(name string, sc SinkConfig, t sinks.Type) error {
	s, err := t.New(name, sc.Options)
	if err != nil {
		return err
	}
	return s.Close(context.Background())
}

// decodeErrors turns mapstructure's joined errors into "<path>: <problem>"
// errors that never quote the offending value.
func decodeErrors(err error) []error {
	if err == nil {
		return nil
	}
	var out []error
	for _, e := range flatten(err) {
		var de *mapstructure.DecodeError
		if errors.As(e, &de) {
			out = append(out, fmt.Errorf("%s: %s", configPath(de.Name()), sinks.DescribeValueError(de.Unwrap())))
			continue
		}
		out = append(out, errors.New("config: "+sinks.DescribeValueError(e)))
	}
	return out
}

var mapKeyPattern = regexp.MustCompile(`\[([^\]0-9][^\]]*)\]`)

// configPath turns mapstructure's "sources[recall].path" into the contract's
// "sources.recall.path"; list indexes stay ("rules[2].when").
func configPath(name string) string {
	return strings.TrimPrefix(mapKeyPattern.ReplaceAllString(name, ".$1"), ".")
}

func prefixDot(s string) string {
	if strings.HasPrefix(s, "config: ") {
		return ": " + strings.TrimPrefix(s, "config: ")
	}
	return "." + s
}

// flatten returns the leaves of a tree of joined errors.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
