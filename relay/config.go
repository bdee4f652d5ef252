package relay

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/knadh/koanf/parsers/yaml"
	"github.com/knadh/koanf/providers/confmap"
	"github.com/knadh/koanf/providers/env/v2"
	"github.com/knadh/koanf/v2"

	"github.com/relay-dev/relay/rules"
	"github.com/relay-dev/relay/sinks"
)

// Config is a loaded and validated configuration file; docs/reference.md
// describes each key, and LoadConfig fills every default.
//
// The config types are the file's schema: a field tagged koanf:"<key>" is
// decoded from that key. Untagged fields are not keys: LoadConfig derives
// them, except Sinks, which it decodes one sink at a time from "sinks".
type Config struct {
	Server  ServerConfig            `koanf:"server"`
	Storage StorageConfig           `koanf:"storage"`
	Sources map[string]SourceConfig `koanf:"sources"`
	Sinks   map[string]SinkConfig
	Retry   RetryPolicy  `koanf:"retry"`
	Rules   []rules.Spec `koanf:"rules"`
	// RuleSet is Rules compiled.
	RuleSet *rules.Set
	// Expectations start, settle and miss timers (see relay/expect.go).
	Expectations []rules.ExpectationSpec `koanf:"expectations"`
	// ExpectSet is Expectations compiled.
	ExpectSet *rules.Expectations
}

// ServerConfig holds the listeners and their limits.
type ServerConfig struct {
	Listen        string        `koanf:"listen"`
	AdminListen   string        `koanf:"admin_listen"`
	AdminToken    sinks.Secret  `koanf:"admin_token"`
	MaxBodyBytes  int64         `koanf:"max_body_bytes"`
	ShutdownGrace time.Duration `koanf:"shutdown_grace"`
	// MaxHeaderBytes bounds a request's header on both listeners.
	MaxHeaderBytes int `koanf:"max_header_bytes"`
	// MaxConnections bounds the ingest listener's open connections; more
	// wait to be accepted. It bounds what slow or idle senders can make the
	// relay hold (see docs/operations.md, Security).
	MaxConnections int `koanf:"max_connections"`
	// TLS and AdminTLS, when set, serve the ingest and admin listeners
	// over HTTPS; the files are read again on reload.
	TLS      TLSConfig `koanf:"tls"`
	AdminTLS TLSConfig `koanf:"admin_tls"`
	// AllowInsecureAdmin lets serve run a non-loopback admin listener
	// without an admin token (see Refusals).
	AllowInsecureAdmin bool `koanf:"allow_insecure_admin"`
	// IngestPriority lets deliveries give way to a busy ingest.
	IngestPriority IngestPriority `koanf:"ingest_priority"`
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
	Dir string `koanf:"dir"`
	// URL, when set, selects cluster mode: an existing NATS deployment.
	URL string `koanf:"url"`
	// Replicas is the stream replica count in cluster mode.
	Replicas int `koanf:"replicas"`
	// Sync is storage.sync as written: "always", or an interval such as
	// 1s. LoadConfig derives SyncAlways and SyncInterval from it.
	Sync string `koanf:"sync"`
	// SyncAlways: fsync before a write is confirmed. Otherwise the store
	// syncs every SyncInterval.
	SyncAlways   bool
	SyncInterval time.Duration
	// DedupeWindow is how long a repeated message id is recognised.
	DedupeWindow time.Duration `koanf:"dedupe_window"`
	// AckWait is how long a delivery handed to a worker may go without news
	// before the store hands it out again (after a crash, say).
	AckWait time.Duration `koanf:"ack_wait"`
	// History is how long every accepted event is kept for search,
	// backtests and replays once it is delivered; 0 keeps only what is
	// undelivered. Dedupe ids are kept for DedupeWindow either way.
	History time.Duration `koanf:"history"`
	// MaxBytes caps what the store may hold: history is given up first,
	// then ingest is refused (see docs/reference.md).
	MaxBytes ByteSize `koanf:"max_bytes"`
}

// SourceConfig is one webhook endpoint.
type SourceConfig struct {
	// Path defaults to /webhooks/<name>.
	Path    string         `koanf:"path"`
	Secrets []sinks.Secret `koanf:"secrets"`
	// Tolerance defaults to 5m.
	Tolerance time.Duration `koanf:"tolerance"`
	// AllowIPs, when set, lists the addresses and CIDR prefixes that may
	// send to the source; others get 403.
	AllowIPs []string `koanf:"allow_ips"`
	// TrustedProxies lists the peers whose X-Forwarded-For is believed
	// when deciding the client's address.
	TrustedProxies []string `koanf:"trusted_proxies"`
}

// SinkConfig is one configured sink: the keys every sink has (its type and
// the delivery settings the relay applies to it), and the rest of its keys,
// which its type's constructor decodes.
type SinkConfig struct {
	Type string `koanf:"type"`
	// Concurrency, when the file does not set it and LoadConfig is given a
	// Registry, is the type's own default, else 4.
	Concurrency int `koanf:"concurrency"`
	// Retry defaults, key by key, to the top-level retry policy.
	Retry RetryPolicy `koanf:"retry"`
	// Breaker defaults, key by key, to DefaultBreaker.
	Breaker BreakerConfig  `koanf:"breaker"`
	Options map[string]any `koanf:",remain"`
}

// BreakerConfig is a sink's circuit breaker: after Failures failed attempts
// in a row the sink gets no attempt for Cooldown, then one probe, and a
// probe that succeeds closes it again (see docs/design.md, Delivery under
// faults).
type BreakerConfig struct {
	Failures int           `koanf:"failures"`
	Cooldown time.Duration `koanf:"cooldown"`
}

// DefaultBreaker returns the breaker settings of a sink whose config does
// not set them.
func DefaultBreaker() BreakerConfig {
	return BreakerConfig{Failures: 5, Cooldown: 30 * time.Second}
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
	return IngestPriority{BusyAt: 6 * startProcs, MaxHold: 50 * time.Millisecond}
}

// startProcs is GOMAXPROCS as the process started: relay serve runs on
// fewer processors while idle (cmd/relay/procs.go), which must not change
// a default derived from the CPUs the process may use.
var startProcs = runtime.GOMAXPROCS(0)

// defaultSinkConcurrency applies when neither the sink's config nor its type
// says how many deliveries may be in flight.
const defaultSinkConcurrency = 4

// defaultConfig is a Config holding every default that does not depend on
// the file; the file is decoded over it.
func defaultConfig() *Config {
	return &Config{
		Server: ServerConfig{
			Listen:         ":8080",
			AdminListen:    "127.0.0.1:9090",
			MaxBodyBytes:   1 << 20,
			ShutdownGrace:  20 * time.Second,
			MaxHeaderBytes: 64 << 10,
			MaxConnections: 1024,
			IngestPriority: DefaultIngestPriority(),
		},
		Storage: StorageConfig{
			Dir:          "./data",
			Replicas:     1,
			Sync:         "always",
			DedupeWindow: 24 * time.Hour,
			AckWait:      30 * time.Second,
			History:      168 * time.Hour,
			MaxBytes:     10 << 30,
		},
		Retry: DefaultRetry(),
	}
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
// separated by "__"), decodes the result over the defaults, fills the
// defaults that depend on other keys (source paths, sink concurrency and
// retry policies), derives SyncAlways and SyncInterval from storage.sync,
// compiles the rules and validates everything. On failure the error joins
// one problem per line, each starting with its config path
// ("rules[2].sinks[0]: unknown sink \"slak\""); it never contains a secret.
func LoadConfig(path string, o LoadOptions) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", path, err)
	}
	return loadConfigBytes(path, data, o)
}

// loadConfigBytes is LoadConfig over the file's contents; name is what
// errors call it.
func loadConfigBytes(name string, data []byte, o LoadOptions) (*Config, error) {
	environ := o.Environ
	if environ == nil {
		environ = os.Environ()
	}
	lookup := envLookup(environ)
	tree, err := yaml.Parser().Unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("read config %s: %w", name, err)
	}
	k := koanf.New(".")
	if err := k.Load(confmap.Provider(expandAll(tree, lookup).(map[string]any), ""), nil); err != nil {
		return nil, fmt.Errorf("expand config %s: %w", name, err)
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

// decodeConfig turns the loaded file into a Config, reporting every problem
// at once: a value that fails to decode keeps its default and the rest is
// validated anyway.
func decodeConfig(k *koanf.Koanf, reg *sinks.Registry) (*Config, error) {
	cfg := defaultConfig()
	blocks, errs := decodeFile(k.Raw(), cfg)
	errs = append(errs, validateServer(cfg.Server)...)
	if err := deriveSync(&cfg.Storage); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, validateStorage(cfg.Storage)...)
	errs = append(errs, validateRetry("retry", cfg.Retry)...)
	applySourceDefaults(cfg.Sources)
	errs = append(errs, validateSources(cfg.Sources)...)
	var sinkErrs []error
	cfg.Sinks, sinkErrs = decodeSinks(blocks, cfg.Retry, reg)
	errs = append(errs, sinkErrs...)
	set, err := rules.Compile(cfg.Rules, func(s string) bool { _, ok := cfg.Sinks[s]; return ok })
	if err != nil {
		errs = append(errs, Problems(err)...)
	}
	cfg.RuleSet = set
	cfg.ExpectSet, err = rules.CompileExpectations(cfg.Expectations)
	errs = append(errs, Problems(err)...)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return cfg, nil
}

// decodeFile decodes the file's tree over cfg, except the sinks, whose blocks
// it returns for decodeSinks: mapstructure leaves out a map entry whose value
// fails to decode, and a sink with a bad value must still be checked and
// known to the rules.
func decodeFile(tree map[string]any, cfg *Config) (map[string]map[string]any, []error) {
	top := struct {
		*Config `koanf:",squash"`
		Sinks   map[string]map[string]any `koanf:"sinks"`
	}{Config: cfg}
	errs := decode("", tree, &top, nil)
	return top.Sinks, errs
}

// decode decodes in over out, which holds the defaults, and returns the
// problems, each under the config path p: values that do not decode (they
// keep their defaults), then keys out has no field for. match says whether
// a key names a field; nil matches ignoring case.
func decode(p string, in, out any, match func(key, field string) bool) []error {
	var md mapstructure.Metadata
	dec, err := mapstructure.NewDecoder(&mapstructure.DecoderConfig{
		TagName:              "koanf",
		IgnoreUntaggedFields: true,
		MatchName:            match,
		Result:               out,
		Metadata:             &md,
		WeaklyTypedInput:     true,
		DecodeHook:           mapstructure.ComposeDecodeHookFunc(mapstructure.StringToTimeDurationHookFunc(), byteSizeHook),
	})
	if err != nil {
		return []error{fmt.Errorf("config decoder: %w", err)}
	}
	errs := decodeErrors(p, dec.Decode(in))
	sort.Strings(md.Unused)
	for _, key := range md.Unused {
		errs = append(errs, fmt.Errorf("%s: unknown key", joinPath(p, configPath(key))))
	}
	return errs
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

func validateServer(s ServerConfig) []error {
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
	if s.MaxBodyBytes > maxStoreMessage-headerRoom {
		errs = append(errs, fmt.Errorf("server.max_body_bytes: at most %d (the store's largest message, less room for headers)", maxStoreMessage-headerRoom))
	}
	if s.ShutdownGrace < 0 {
		errs = append(errs, errors.New("server.shutdown_grace: must not be negative"))
	}
	if s.MaxConnections < 1 {
		errs = append(errs, errors.New("server.max_connections: must be at least 1"))
	}
	if s.MaxHeaderBytes < 4096 {
		errs = append(errs, errors.New("server.max_header_bytes: must be at least 4096"))
	}
	for _, l := range []struct {
		p string
		t TLSConfig
	}{{"server.tls", s.TLS}, {"server.admin_tls", s.AdminTLS}} {
		if l.t.Enabled() && (l.t.CertFile == "" || l.t.KeyFile == "") {
			errs = append(errs, fmt.Errorf("%s: cert_file and key_file are both required", l.p))
		}
	}
	if s.IngestPriority.BusyAt < 0 {
		errs = append(errs, errors.New("server.ingest_priority.busy_at: must not be negative (0 turns it off)"))
	}
	if s.IngestPriority.MaxHold < 0 {
		errs = append(errs, errors.New("server.ingest_priority.max_hold: must not be negative"))
	}
	return errs
}

// deriveSync sets SyncAlways and SyncInterval from Sync, or says why Sync is
// invalid.
func deriveSync(s *StorageConfig) error {
	if s.Sync == "always" {
		s.SyncAlways = true
		return nil
	}
	d, err := time.ParseDuration(s.Sync)
	s.SyncInterval = d
	if err != nil || d <= 0 {
		return errors.New(`storage.sync: invalid value (want "always" or an interval such as 1s)`)
	}
	return nil
}

// validateStorage checks the storage keys; Sync is checked by deriveSync.
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
	if s.History < 0 {
		errs = append(errs, errors.New("storage.history: must not be negative (0 keeps only what is undelivered)"))
	}
	if s.MaxBytes < minStoreBytes {
		errs = append(errs, fmt.Errorf("storage.max_bytes: must be at least %s", ByteSize(minStoreBytes)))
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

// applySourceDefaults fills the path and tolerance of each source that does
// not set them (or sets them to zero).
func applySourceDefaults(sources map[string]SourceConfig) {
	for name, src := range sources {
		if src.Path == "" {
			src.Path = "/webhooks/" + name
		}
		if src.Tolerance == 0 {
			src.Tolerance = 5 * time.Minute
		}
		sources[name] = src
	}
}

func validateSources(sources map[string]SourceConfig) []error {
	var errs []error
	if len(sources) == 0 {
		errs = append(errs, errors.New("sources: at least one source required"))
	}
	paths := make(map[string]string)
	for _, name := range slices.Sorted(maps.Keys(sources)) {
		if err := validateName(name); err != nil {
			errs = append(errs, fmt.Errorf("sources.%s: %w", name, err))
		}
		src := sources[name]
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
		if len(src.Secrets) == 0 {
			errs = append(errs, fmt.Errorf("%s.secrets: at least one secret required", p))
		}
		for i, sec := range src.Secrets {
			if err := validateWebhookSecret(sec.Reveal()); err != nil {
				errs = append(errs, fmt.Errorf("%s.secrets[%d]: %w", p, i, err))
			}
		}
		_, addrErrs := newAddrPolicy(p, src.AllowIPs, src.TrustedProxies)
		errs = append(errs, addrErrs...)
	}
	return errs
}

// decodeSinks decodes and checks each sink's block; a sink's retry policy
// starts from retry, the top-level one. With a registry, each sink's type
// must be known and its options are checked by building it.
func decodeSinks(blocks map[string]map[string]any, retry RetryPolicy, reg *sinks.Registry) (map[string]SinkConfig, []error) {
	out := make(map[string]SinkConfig, len(blocks))
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(blocks)) {
		if err := validateName(name); err != nil {
			errs = append(errs, fmt.Errorf("sinks.%s: %w", name, err))
		}
		sc, sinkErrs := decodeSink(name, blocks[name], retry)
		errs = append(errs, sinkErrs...)
		if sc.Type != "" && reg != nil {
			errs = append(errs, resolveSinkType(name, &sc, reg)...)
		}
		out[name] = sc
	}
	return out, errs
}

// decodeSink decodes one sink's block over its defaults and checks the keys
// every sink has.
func decodeSink(name string, block map[string]any, retry RetryPolicy) (SinkConfig, []error) {
	p := "sinks." + name
	block, errs := checkSinkKeys(p, block)
	sc := SinkConfig{Retry: retry, Breaker: DefaultBreaker(), Options: make(map[string]any)}
	errs = append(errs, decode(p, block, &sc, matchSinkKey)...)
	if _, own := block["retry"]; own {
		errs = append(errs, validateRetry(p+".retry", sc.Retry)...)
	}
	errs = append(errs, validateBreaker(p+".breaker", sc.Breaker)...)
	if sc.Type == "" {
		errs = append(errs, fmt.Errorf("%s.type: required", p))
	}
	return sc, errs
}

// matchSinkKey matches the keys of SinkConfig's own fields exactly: any
// other key of a sink's block is an option, and "Type" is one. The keys of
// its retry policy and breaker match ignoring case, as everywhere else in
// the file.
func matchSinkKey(key, field string) bool {
	switch field {
	case "type", "concurrency", "retry", "breaker":
		return key == field
	}
	return strings.EqualFold(key, field)
}

func validateBreaker(p string, b BreakerConfig) []error {
	var errs []error
	if b.Failures < 1 {
		errs = append(errs, fmt.Errorf("%s.failures: must be at least 1", p))
	}
	if b.Cooldown <= 0 {
		errs = append(errs, fmt.Errorf("%s.cooldown: must be positive", p))
	}
	return errs
}

// checkSinkKeys holds a sink's type and concurrency to rules stricter than
// mapstructure's weak typing, which would read type: 5 as "5" and
// concurrency: 2.5 as 2. It returns a copy of the block without the values
// it rejects and with a valid concurrency as an int, and its problems.
func checkSinkKeys(p string, block map[string]any) (map[string]any, []error) {
	block = maps.Clone(block)
	var errs []error
	if v, ok := block["type"]; ok {
		if _, ok := v.(string); !ok {
			errs = append(errs, fmt.Errorf("%s.type: must be a string", p))
			delete(block, "type")
		}
	}
	if v, ok := block["concurrency"]; ok {
		// A whole number, as an integer or written as one in decimal.
		n, err := strconv.Atoi(fmt.Sprint(v))
		if err != nil || n < 1 {
			errs = append(errs, fmt.Errorf("%s.concurrency: must be a whole number of at least 1", p))
			delete(block, "concurrency")
		} else {
			block["concurrency"] = n
		}
	}
	return block, errs
}

// resolveSinkType looks the sink's type up in reg, fills its concurrency
// default, and checks its options.
func resolveSinkType(name string, sc *SinkConfig, reg *sinks.Registry) []error {
	p := "sinks." + name
	t, ok := withCompile(reg).Lookup(sc.Type)
	if !ok {
		return []error{fmt.Errorf("%s.type: unknown sink type %q (known: %s)", p, sc.Type, strings.Join(reg.Names(), ", "))}
	}
	if sc.Concurrency == 0 {
		sc.Concurrency = t.Concurrency
	}
	if sc.Concurrency == 0 {
		sc.Concurrency = defaultSinkConcurrency
	}
	var errs []error
	for _, e := range Problems(validateSinkOptions(name, *sc, t)) {
		errs = append(errs, fmt.Errorf("%s.%w", p, e))
	}
	return errs
}

// validateSinkOptions builds the sink once to check its options, then
// closes it.
func validateSinkOptions(name string, sc SinkConfig, t sinks.Type) error {
	s, err := t.Build(name, sc.Options)
	if err != nil {
		return err
	}
	return s.Close(context.Background())
}

// decodeErrors turns mapstructure's joined errors into "<path>: <problem>"
// errors, under the config path p, that never quote the offending value.
func decodeErrors(p string, err error) []error {
	var out []error
	for _, e := range Problems(err) {
		var de *mapstructure.DecodeError
		if errors.As(e, &de) {
			msg := sinks.DescribeValueError(de.Unwrap())
			if errors.Is(e, errByteSize) {
				msg = errByteSize.Error()
			}
			out = append(out, fmt.Errorf("%s: %s", joinPath(p, configPath(de.Name())), msg))
			continue
		}
		where := p
		if where == "" {
			where = "config"
		}
		out = append(out, fmt.Errorf("%s: %s", where, sinks.DescribeValueError(e)))
	}
	return out
}

var mapKeyPattern = regexp.MustCompile(`\[([^\]0-9][^\]]*)\]`)

// configPath turns mapstructure's "sources[recall].path" into the config
// path "sources.recall.path"; list indexes stay ("rules[2].when").
func configPath(name string) string {
	return strings.TrimPrefix(mapKeyPattern.ReplaceAllString(name, ".$1"), ".")
}

// joinPath joins a config path and a path below it; either may be empty.
func joinPath(p, below string) string {
	if p == "" || below == "" {
		return p + below
	}
	return p + "." + below
}

// Problems returns the leaves of a tree of joined errors (errors.Join),
// in order: the problems of a config error, one per line. A nil error has
// none.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Problems(e)...)
		}
		return out
	}
	return []error{err}
}
