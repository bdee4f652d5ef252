package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/relay-dev/relay/relay"
)

// backtestCommand is "relay backtest": a candidate config's rules over the
// stored events of a running relay, compared with how they were routed.
func backtestCommand() *cobra.Command {
	var candidate string
	var f eventFilter
	var asJSON, failOnChange bool
	cmd := &cobra.Command{
		Use:   "backtest -c CANDIDATE.yaml",
		Short: "Compare how a candidate config would route the stored events with how they were routed",
		Args:  noArgs,
	}
	c := adminCommand(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if candidate == "" {
			return usageErr("backtest: -c CANDIDATE.yaml is required")
		}
		cfg, err := relay.LoadConfig(candidate, relay.LoadOptions{Registry: registry(nil)})
		if err != nil {
			for _, p := range relay.Problems(err) {
				fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", candidate, p)
			}
			return &exitError{code: 2, err: fmt.Errorf("%s: the candidate config is not valid", candidate)}
		}
		body, _ := json.Marshal(relay.BacktestRequest{Rules: relay.BacktestRules(cfg.Rules)})
		q := f.query()
		answer, err := c.send(http.MethodPost, "/api/v1/backtest", q, body)
		if err != nil {
			return err
		}
		var rep relay.BacktestReport
		if err := json.Unmarshal(answer, &rep); err != nil {
			return &exitError{code: 1, err: fmt.Errorf("admin API: %w", err)}
		}
		out := cmd.OutOrStdout()
		if asJSON {
			err = writeJSONTo(out, rep)
		} else {
			err = printBacktest(out, candidate, &rep)
		}
		if err == nil && failOnChange && rep.Changed > 0 {
			return errFailed
		}
		return err
	}
	cmd.Flags().StringVarP(&candidate, "config", "c", "", "the candidate config (required)")
	cmd.Flags().StringVar(&f.since, "since", "", "only events received since then: a duration back from now (24h) or an RFC 3339 time")
	cmd.Flags().StringVar(&f.where, "where", "", "only events this expression matches")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&failOnChange, "fail-on-change", false, "exit 1 when the candidate routes any event differently")
	return cmd
}

func printBacktest(w io.Writer, candidate string, rep *relay.BacktestReport) error {
	fmt.Fprintf(w, "%s over %d stored events: %d routed differently", candidate, rep.Events, rep.Changed)
	if len(rep.Examples) > 0 {
		fmt.Fprintf(w, " (e.g. %s)", idList(rep.Examples))
	}
	fmt.Fprintln(w)
	for _, part := range []struct {
		title  string
		counts map[string]*relay.BacktestCount
	}{{"RULE", rep.Rules}, {"SINK", rep.Sinks}} {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "%s\tBEFORE\tAFTER\tGAINED\tLOST\n", part.title)
		for _, name := range slices.Sorted(maps.Keys(part.counts)) {
			c := part.counts[name]
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", name, c.Before, c.After, orDash(idList(c.Gained)), orDash(idList(c.Lost)))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(rep.RuleErrors)) {
		fmt.Fprintf(w, "rule %s failed at run time on %d events (counted as not matched)\n", name, rep.RuleErrors[name])
	}
	return nil
}

// idList is "3, 7, 9" (example ids).
func idList(ids []uint64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatUint(id, 10)
	}
	return strings.Join(s, ", ")
}
