package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentile returns the p-th percentile (0 < p <= 100) of sorted using the
// nearest-rank method: the smallest value such that at least p% of the values
// are less than or equal to it. It returns 0 for an empty slice; p <= 0
// yields the minimum.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// latencyReport holds latency statistics in milliseconds.
type latencyReport struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// report is the machine-readable summary of a load run (printed by --json).
type report struct {
	URL          string           `json:"url"`
	Mode         string           `json:"mode"` // "closed" or "open"
	Concurrency  int              `json:"concurrency"`
	Rate         float64          `json:"rate,omitempty"`
	Sent         int64            `json:"sent"`
	OK           int64            `json:"ok"` // 2xx responses
	Duplicates   int64            `json:"duplicates"`
	Statuses     map[string]int64 `json:"statuses"`
	Errors       map[string]int64 `json:"errors,omitempty"`
	Missed       int64            `json:"missed,omitempty"`
	WallSeconds  float64          `json:"wall_seconds"`
	Throughput   float64          `json:"throughput_rps"`
	OKThroughput float64          `json:"ok_throughput_rps"`
	Latency      latencyReport    `json:"latency"`
	Interrupted  bool             `json:"interrupted,omitempty"`
	IDsOut       string           `json:"ids_out,omitempty"`
}

func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*1000) / 1000
}

// newReport summarises res.
func newReport(cfg config, res *result) report {
	r := report{
		URL:         cfg.url,
		Mode:        "closed",
		Concurrency: cfg.concurrency,
		Rate:        cfg.rate,
		Sent:        res.sent,
		Duplicates:  res.duplicates,
		Statuses:    res.statuses,
		Errors:      res.errors,
		Missed:      res.missed,
		WallSeconds: math.Round(res.wall.Seconds()*1e6) / 1e6,
		Interrupted: res.interrupted,
		IDsOut:      cfg.idsOut,
	}
	if cfg.rate > 0 {
		r.Mode = "open"
	}
	for code, n := range res.statuses {
		if c, err := strconv.Atoi(code); err == nil && c >= 200 && c < 300 {
			r.OK += n
		}
	}
	if res.wall > 0 {
		r.Throughput = math.Round(float64(res.sent)/res.wall.Seconds()*10) / 10
		r.OKThroughput = math.Round(float64(r.OK)/res.wall.Seconds()*10) / 10
	}
	lat := res.latencies
	r.Latency.Count = int64(len(lat))
	if len(lat) > 0 {
		var sum time.Duration
		for _, d := range lat {
			sum += d
		}
		r.Latency.Mean = ms(sum / time.Duration(len(lat)))
		r.Latency.P50 = ms(percentile(lat, 50))
		r.Latency.P90 = ms(percentile(lat, 90))
		r.Latency.P99 = ms(percentile(lat, 99))
		r.Latency.Max = ms(lat[len(lat)-1])
	}
	return r
}

// writeJSON writes r as one line of JSON.
func (r report) writeJSON(w io.Writer) error {
	return json.NewEncoder(w).Encode(r)
}

// codesFirst returns the keys of m with numeric status codes first, in order.
func codesFirst(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		ai, aerr := strconv.Atoi(a)
		bi, berr := strconv.Atoi(b)
		switch {
		case aerr == nil && berr == nil:
			return ai - bi
		case aerr == nil:
			return -1
		case berr == nil:
			return 1
		}
		return strings.Compare(a, b)
	})
	return keys
}

// writeText writes r in a human-readable form.
func (r report) writeText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "target:      %s\n", r.URL)
	if r.Mode == "open" {
		fmt.Fprintf(&b, "mode:        open loop, rate %g/s, max in flight %d\n", r.Rate, r.Concurrency)
	} else {
		fmt.Fprintf(&b, "mode:        closed loop, concurrency %d\n", r.Concurrency)
	}
	fmt.Fprintf(&b, "sent:        %d (2xx %d, duplicates %d)\n", r.Sent, r.OK, r.Duplicates)
	if r.Missed > 0 {
		fmt.Fprintf(&b, "missed:      %d (due but not sent before the duration ended)\n", r.Missed)
	}
	parts := make([]string, 0, len(r.Statuses))
	for _, k := range codesFirst(r.Statuses) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, r.Statuses[k]))
	}
	fmt.Fprintf(&b, "status:      %s\n", strings.Join(parts, " "))
	for _, k := range codesFirst(r.Errors) {
		fmt.Fprintf(&b, "  error x%d: %s\n", r.Errors[k], k)
	}
	fmt.Fprintf(&b, "wall:        %.3fs\n", r.WallSeconds)
	fmt.Fprintf(&b, "throughput:  %.1f req/s (2xx %.1f/s)\n", r.Throughput, r.OKThroughput)
	fmt.Fprintf(&b, "latency:     p50=%.3fms p90=%.3fms p99=%.3fms max=%.3fms mean=%.3fms (n=%d)\n",
		r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, r.Latency.Mean, r.Latency.Count)
	if r.IDsOut != "" {
		fmt.Fprintf(&b, "ids-out:     %s (%d ids)\n", r.IDsOut, r.OK)
	}
	if r.Interrupted {
		fmt.Fprintf(&b, "interrupted: stopped early by signal\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
