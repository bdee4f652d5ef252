package relay

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics holds the relay's Prometheus metrics, registered on their own
// registry so that several relays can live in one process (tests).
type Metrics struct {
	Registry *prometheus.Registry

	IngestRequests     *prometheus.CounterVec
	IngestRejected     *prometheus.CounterVec
	EventsAccepted     *prometheus.CounterVec
	RuleMatches        *prometheus.CounterVec
	RuleErrors         *prometheus.CounterVec
	Deliveries         *prometheus.CounterVec
	DeliveryDuration   *prometheus.HistogramVec
	DeadLetters        *prometheus.GaugeVec
	PendingDeliveries  *prometheus.GaugeVec
	ConfigReloadOK     prometheus.Gauge
	ConfigReloadTime   prometheus.Gauge
	IngestStoreLatency prometheus.Histogram
	// Deliveries giving way to a busy ingest (server.ingest_priority).
	Yielding   *prometheus.GaugeVec
	YieldTotal *prometheus.CounterVec
	// The store's size against storage.max_bytes, and history.
	StoreBytes     prometheus.Gauge
	StoreMaxBytes  prometheus.Gauge
	HistoryEvents  prometheus.Gauge
	HistoryEvicted prometheus.Counter
	// BreakerOpen is 1 while a sink's breaker holds its deliveries back.
	BreakerOpen *prometheus.GaugeVec
	// Expectation timers open now (read from the store at each scrape) and
	// missed events stored.
	ExpectationsOpen   *prometheus.GaugeVec
	ExpectationsMissed *prometheus.CounterVec
	// SlackMessages counts Slack messages by sink and kind (post, reply,
	// update); sinks count through sinks.Env.Count.
	SlackMessages *prometheus.CounterVec
}

// NewMetrics creates and registers every metric listed in docs/reference.md,
// plus the Go and process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		IngestRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_ingest_requests_total",
			Help: "Webhook requests received, by source and HTTP status code answered.",
		}, []string{"source", "code"}),
		IngestRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_ingest_rejected_total",
			Help: "Webhook requests refused, by source and reason (address, headers, timestamp, too_large, unreadable, signature, not_json).",
		}, []string{"source", "reason"}),
		EventsAccepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_events_accepted_total",
			Help: "Events verified and stored (duplicates excluded), by source.",
		}, []string{"source"}),
		RuleMatches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_rule_matches_total",
			Help: "Events matched, by rule.",
		}, []string{"rule"}),
		RuleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_rule_errors_total",
			Help: "Rule evaluations that failed at run time (counted as not matched), by rule.",
		}, []string{"rule"}),
		Deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliveries_total",
			Help: "Delivery attempts by sink and outcome (delivered, retried, dead_lettered).",
		}, []string{"sink", "outcome"}),
		DeliveryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "relay_delivery_duration_seconds",
			Help:    "Time taken by one delivery attempt, by sink.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"sink"}),
		DeadLetters: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_dead_letters",
			Help: "Dead letters currently stored, by sink.",
		}, []string{"sink"}),
		PendingDeliveries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_pending_deliveries",
			Help: "Deliveries queued or in flight, by sink.",
		}, []string{"sink"}),
		ConfigReloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_config_last_reload_successful",
			Help: "Whether the last configuration load or reload succeeded (1) or failed (0).",
		}),
		ConfigReloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load or reload.",
		}),
		IngestStoreLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_ingest_store_duration_seconds",
			Help:    "Time from a verified request to the store's confirmation of the write.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		Yielding: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_deliveries_yielding",
			Help: "Deliveries waiting for a busy ingest to ease before they send (server.ingest_priority), by sink.",
		}, []string{"sink"}),
		YieldTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_delivery_yield_seconds_total",
			Help: "Time deliveries spent waiting for a busy ingest to ease (server.ingest_priority), by sink.",
		}, []string{"sink"}),
		StoreBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_store_bytes",
			Help: "Bytes the store holds: undelivered events, history, dead letters, dedupe ids and the delivery trail.",
		}),
		StoreMaxBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_store_max_bytes",
			Help: "storage.max_bytes: at 90% of it history is given up early, at 95% (nothing left to give up) ingest answers 503.",
		}),
		HistoryEvents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_history_events",
			Help: "Events in history (storage.history).",
		}),
		HistoryEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_history_evicted_total",
			Help: "Delivered events that left history before storage.history because the store neared storage.max_bytes.",
		}),
		BreakerOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_sink_breaker_open",
			Help: "1 while the sink's breaker is open (no deliveries but a probe after the cooldown), else 0, by sink.",
		}, []string{"sink"}),
		ExpectationsOpen: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_expectations_open",
			Help: "Expectation timers started and neither settled nor run out yet, by expectation (read from the store at each scrape).",
		}, []string{"expectation"}),
		ExpectationsMissed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_expectations_missed_total",
			Help: "Expectation timers that ran out, each stored as one relay.expectation_missed event, by expectation.",
		}, []string{"expectation"}),
		SlackMessages: newSlackMessages(),
	}
	m.Registry.MustRegister(
		m.IngestRequests, m.IngestRejected, m.EventsAccepted, m.RuleMatches, m.RuleErrors,
		m.Deliveries, m.DeliveryDuration, m.DeadLetters, m.PendingDeliveries,
		m.ConfigReloadOK, m.ConfigReloadTime, m.IngestStoreLatency,
		m.Yielding, m.YieldTotal, m.BreakerOpen,
		m.ExpectationsOpen, m.ExpectationsMissed, m.SlackMessages,
		m.StoreBytes, m.StoreMaxBytes, m.HistoryEvents, m.HistoryEvicted,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// initLabels creates the series of every configured source, rule and sink,
// so that they are scraped (at zero) before anything happens and alerts on
// rates see them from the start.
func (m *Metrics) initLabels(cfg *Config) {
	for name := range cfg.Sources {
		m.IngestRequests.WithLabelValues(name, "200")
		for _, reason := range []string{"address", "headers", "timestamp", "too_large", "unreadable", "signature", "not_json"} {
			m.IngestRejected.WithLabelValues(name, reason)
		}
		m.EventsAccepted.WithLabelValues(name)
	}
	for _, r := range cfg.Rules {
		m.RuleMatches.WithLabelValues(r.Name)
		m.RuleErrors.WithLabelValues(r.Name)
	}
	for name := range cfg.Sinks {
		for _, outcome := range []string{"delivered", "retried", "dead_lettered"} {
			m.Deliveries.WithLabelValues(name, outcome)
		}
		m.DeliveryDuration.WithLabelValues(name)
		m.DeadLetters.WithLabelValues(name)
		m.PendingDeliveries.WithLabelValues(name)
		m.Yielding.WithLabelValues(name)
		m.YieldTotal.WithLabelValues(name)
		m.BreakerOpen.WithLabelValues(name)
	}
	for _, name := range cfg.ExpectSet.Names() {
		m.ExpectationsOpen.WithLabelValues(name)
		m.ExpectationsMissed.WithLabelValues(name)
	}
}

// watchIngest exports the ingest load.
func (m *Metrics) watchIngest(l *ingestLoad) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_ingest_load",
		Help: "Verified webhook requests in flight, averaged over the last 20 ms; at server.ingest_priority.busy_at, deliveries give way.",
	}, l.current))
}
